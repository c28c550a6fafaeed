"""zsp_ros/runtime."""
