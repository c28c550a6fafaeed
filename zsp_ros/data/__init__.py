"""zsp_ros/data."""
