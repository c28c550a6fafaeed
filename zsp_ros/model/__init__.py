"""zsp_ros/model."""
