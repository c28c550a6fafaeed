"""zsp_ros/cli."""
