"""zsp_ros."""
