"""zsp_ros/utils."""
