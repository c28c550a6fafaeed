"""zsp_ros/runtime/backends."""
