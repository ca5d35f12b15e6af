"""Run the lang_seg_ros node next to a camera driver (needs a ROS 2 install with `launch_ros`).

    ros2 launch lang_seg_ros segment.launch.py image:=/camera/color/image_raw \
        camera_info:=/camera/color/camera_info labels:="road, pavement, car, pedestrian, sky"

The embedded default model knows street scenes only; indoor labels ("floor, wall, chair, mug")
need an official LSeg checkpoint: add checkpoint:=/path/demo_e200.ckpt.

Arguments (see `ros2 launch lang_seg_ros segment.launch.py --show-args`): image, camera_info,
use_compressed, labels, checkpoint, device, use_depth, depth, depth_camera_info, params_file,
namespace, node_name, lifecycle, cameras, fastdds_profile. `labels`, `checkpoint`, `device`,
`use_compressed`, `use_depth` and `cameras` override the params file's values only when given (see
lang_seg_ros/ros/launch_args.py); `labels` and `cameras` may be a comma-separated string or a list:
labels:="[road, car, pedestrian]" cameras:="[front, rear]". With cameras, remap each camera's
topics on the command line (front/image:=..., rear/camera_info:=...: `ros2 launch` reads them as
launch arguments, which this file hands to the node as remaps); `image` and friends apply to the
single-camera node.

The Fast DDS profile (config/fastdds_shm.xml, a 16 MiB shared-memory segment) is set through
FASTRTPS_DEFAULT_PROFILES_FILE for the processes this file starts. Full-size images reach a
best-effort subscriber through shared memory only if the camera driver uses it too: export
the same variable in the shell that starts the driver, or start the driver from this file.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.substitutions import FindPackageShare

from lang_seg_ros.ros.launch_args import camera_remappings, node_overrides, remappings, truthy

PACKAGE = "lang_seg_ros"
_ARGUMENTS = ("image", "camera_info", "use_compressed", "labels", "checkpoint", "device", "use_depth", "depth",
              "depth_camera_info", "params_file", "namespace", "node_name", "lifecycle", "cameras")


def _node(context, *args, **kwargs):
    values = {name: LaunchConfiguration(name).perform(context) for name in _ARGUMENTS}
    common = dict(
        package=PACKAGE,
        name=values["node_name"],
        namespace=values["namespace"],
        parameters=[values["params_file"], node_overrides(values)],
        remappings=remappings(values) + camera_remappings(context.launch_configurations),
        output="screen",
        emulate_tty=True,
    )
    if truthy(values["lifecycle"]):
        return [LifecycleNode(executable="lang_seg_ros_lifecycle", **common)]
    return [Node(executable="lang_seg_ros", **common)]


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare(PACKAGE)
    arguments = [
        DeclareLaunchArgument("image", default_value="/camera/image_raw",
                              description="Camera image topic (sensor_msgs/Image); with use_compressed, "
                                          "its /compressed sibling is used."),
        DeclareLaunchArgument("camera_info", default_value="/camera/camera_info",
                              description="Camera info topic; the node republishes it scaled to the mask."),
        DeclareLaunchArgument("use_compressed", default_value="",
                              description="true: subscribe sensor_msgs/CompressedImage on <image>/compressed; "
                                          "empty = the params file's (default false)."),
        DeclareLaunchArgument("labels", default_value="",
                              description="Initial labels, 'a, b, c' or '[a, b, c]'; empty = the params file's."),
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="Model checkpoint path, or an embedded model: default, default-large; "
                                          "empty = the params file's (default: the embedded default model)."),
        DeclareLaunchArgument("device", default_value="",
                              description="auto, cpu, cuda, cuda:N or mps; empty = the params file's (default auto)."),
        DeclareLaunchArgument("use_depth", default_value="",
                              description="true: subscribe <depth> and <depth_camera_info> for regions in 3D; "
                                          "empty = the params file's (default false)."),
        DeclareLaunchArgument("depth", default_value="/camera/aligned_depth_to_color/image_raw",
                              description="Depth image registered to the colour image (16UC1 mm or 32FC1 m)."),
        DeclareLaunchArgument("depth_camera_info", default_value="/camera/aligned_depth_to_color/camera_info",
                              description="Camera info of the depth image."),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config", "segment.yaml"]),
                              description="Node parameters (YAML)."),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node and its topics."),
        DeclareLaunchArgument("node_name", default_value="lang_seg", description="Node name."),
        DeclareLaunchArgument("cameras", default_value="",
                              description="Several cameras, one model: '[front, rear]' reads front/image, "
                                          "rear/image, ... and publishes under front/, rear/ (remap each: "
                                          "front/image:=/robot/front/color/image_raw); empty = the params "
                                          "file's (default: one camera on image, camera_info, ...)."),
        DeclareLaunchArgument("lifecycle", default_value="false",
                              description="Start the managed (lifecycle) variant; it autostarts unless the "
                                          "params file sets autostart: false."),
        DeclareLaunchArgument("fastdds_profile",
                              default_value=PathJoinSubstitution([share, "config", "fastdds_shm.xml"]),
                              description="Fast DDS XML profile (16 MiB shared memory for full-size images)."),
    ]
    return LaunchDescription([
        *arguments,
        SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", LaunchConfiguration("fastdds_profile")),
        OpaqueFunction(function=_node),
    ])
