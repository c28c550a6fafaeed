"""Start zsp_node (a LifecycleNode) with config/zsp.yaml and camera remaps; optionally autostart it.

    ros2 launch zsp_ros zsp.launch.py image:=/camera/image_raw kit:=/path/to/kit namespace:=robot1

Launch arguments:
    kit          model kit directory; "" = the embedded kit. Overrides the params file's ``kit``.
    namespace    ROS namespace of the node (topics and services are relative to it).
    image        input image topic (remaps ``image``). With the params file's ``image_transport:
                 compressed`` the node subscribes ``<image>/compressed`` itself (it resolves the remap).
    params_file  the node's parameters (default: the package's config/zsp.yaml).
    autostart    "true": configure, then activate once configured, through lifecycle events.

No logic here beyond wiring: every default value of the node lives in config/zsp.yaml.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, RegisterEventHandler
from launch.conditions import IfCondition
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition


def generate_launch_description() -> LaunchDescription:
    config = os.path.join(get_package_share_directory("zsp_ros"), "config", "zsp.yaml")
    image = LaunchConfiguration("image")
    autostart = IfCondition(LaunchConfiguration("autostart"))

    node = LifecycleNode(
        package="zsp_ros", executable="zsp_node", name="zsp_node",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file"), {"kit": LaunchConfiguration("kit")}],
        remappings=[("image", image)],
        output="screen")

    configure = EmitEvent(
        event=ChangeState(lifecycle_node_matcher=matches_action(node),
                          transition_id=Transition.TRANSITION_CONFIGURE),
        condition=autostart)
    activate_when_configured = RegisterEventHandler(
        OnStateTransition(
            target_lifecycle_node=node, start_state="configuring", goal_state="inactive",
            entities=[EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                                  transition_id=Transition.TRANSITION_ACTIVATE))]),
        condition=autostart)

    return LaunchDescription([
        DeclareLaunchArgument("kit", default_value="", description="model kit directory; empty = embedded kit"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("image", default_value="/camera/image_raw", description="input image topic"),
        DeclareLaunchArgument("params_file", default_value=config, description="parameters of zsp_node"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="configure and activate the node through lifecycle events"),
        node,
        activate_when_configured,
        configure,
    ])
