"""The ROS 2 layer of zsp_ros: messages in, messages out (imports point node -> runtime).

- ``zsp_node``: the LifecycleNode (topics, services, diagnostics) over ``runtime.Segmenter``.
- ``parameters``: the parameter spec; defaults come from config/zsp.yaml only.
- ``frame_input`` / ``frame_stats``: one-frame mailbox with drop/malformed counting; diagnostics.
- ``category_services``: the add / remove / list service callbacks (every reply carries the version).
- ``messages``: pure builders of PanopticSegmentation, CategorySet, semantic and overlay images.
- ``image_conversion``: the picture input's front door (``check_picture``, ``to_rgb8``) without cv_bridge,
  over ``image_encodings`` (layouts, conversions, the error and its causes), ``raw_image``,
  ``compressed_image`` (Pillow) and ``compressed_headers`` (PNG/JPEG headers read without decoding);
  ``input_limits``: the size limits checked before decoding.
- ``client``, ``launcher``, ``synthetic_camera``: the pieces `zsp demo` and `zsp bench node` use.
- ``main``: ``zsp_node`` / ``zsp node`` entry point.

rclpy and the message packages are imported inside the modules that need them, never here,
so ``import zsp_ros.node`` works on a machine without ROS 2.
"""
