"""zsp_ros/evaluation."""
