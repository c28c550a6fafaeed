"""The ROS 2 layer of zsp_ros: messages in, messages out (imports point node -> runtime).

- ``image_conversion``: sensor_msgs/Image and CompressedImage <-> numpy without cv_bridge
  (encodings, padded rows, endianness, JPEG/PNG), used by the node to read camera images
  and to publish id images, semantic maps and overlays.

rclpy and the message packages are imported inside the modules that need them, never here,
so ``import zsp_ros.node`` works on a machine without ROS 2.
"""
