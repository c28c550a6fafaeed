"""The node's topic names (relative: remap them, or set the node's namespace), in one place for the
node, its clients, the demo and the tests.

``category_set`` carries zsp_msgs/CategorySet. It is deliberately not called ``label_info``: tools
that know vision_msgs expect vision_msgs/LabelInfo on that name (README: the mapping to LabelInfo).
"""
from __future__ import annotations

IMAGE = "image"                    # input, sensor_msgs/Image (image_transport raw)
COMPRESSED_SUFFIX = "/compressed"  # image_transport compressed: <resolved IMAGE>/compressed, CompressedImage
PANOPTIC = "panoptic"              # zsp_msgs/PanopticSegmentation (id_image 16UC1)
SEMANTIC = "semantic"              # sensor_msgs/Image 16UC1 category ids
COLOR_MASK = "color_mask"          # sensor_msgs/Image rgb8, one fixed colour per category id
OVERLAY = "overlay"                # sensor_msgs/Image rgb8, colours, outlines and labels over the frame
CATEGORY_SET = "category_set"      # zsp_msgs/CategorySet, transient local, republished on every change
DIAGNOSTICS = "/diagnostics"       # diagnostic_msgs/DiagnosticArray
