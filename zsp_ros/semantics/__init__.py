"""zsp_ros/semantics."""
