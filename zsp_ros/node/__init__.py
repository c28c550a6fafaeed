"""zsp_ros/node."""
