"""Launch lunar_recon's stereo_node.

    ros2 launch lunar_recon stereo.launch.py [namespace:=stereo] [model:=/path/student.pt]
        [params_file:=...] [left_namespace:=left] [right_namespace:=right] [use_sim_time:=false] [rviz:=false]

Like stereo_image_proc's launch: the node subscribes to left/image_rect, left/camera_info,
right/image_rect, right/camera_info, remapped to <left_namespace>/... and <right_namespace>/...
The parameter file is read first; ``model`` overrides it only when given.  When stereo_node or
the viewer exits, the whole launch shuts down (no orphaned node); ``rviz:=true`` without rviz2
installed stops before anything starts, saying so.
"""

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, Shutdown
from launch.substitutions import PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = {
    "namespace": ("", "namespace of the node, its output topics and the viewer"),
    "params_file": ("", "parameter file (default: the package's config/stereo.yaml)"),
    "model": ("", "checkpoint path, 'sgbm', 'sgbm-wls' or 'default'; empty: the parameter file's"),
    "use_sim_time": ("false", "use /clock (bag replay)"),
    "left_namespace": ("left", "namespace of the left camera topics"),
    "right_namespace": ("right", "namespace of the right camera topics"),
    "rviz": ("false", "start rviz2 with config/lunar_recon.rviz"),
}
# The parameter file's default is a path in the package's share folder.
PARAMS_FILE_DEFAULT = PathJoinSubstitution([FindPackageShare("lunar_recon"), "config", "stereo.yaml"])


def _is_true(value: str) -> bool:
    return value.strip().lower() in ("true", "1", "yes", "on")


def _actions(context):
    cfg = context.launch_configurations
    namespace, left, right = cfg["namespace"], cfg["left_namespace"], cfg["right_namespace"]
    sim_time = _is_true(cfg["use_sim_time"])
    overrides = {"use_sim_time": sim_time}
    if cfg["model"]:  # given on the command line: it wins over the file; else the file's own
        overrides["model"] = cfg["model"]
    if _is_true(cfg["rviz"]):
        try:
            get_package_share_directory("rviz2")
        except PackageNotFoundError:
            return [
                LogInfo(
                    msg="rviz:=true but rviz2 is not installed (install ros-<distro>-rviz2, or launch "
                    "with rviz:=false): nothing started"
                ),
                Shutdown(reason="rviz2 is not installed"),
            ]
    remap = [
        ("left/image_rect", f"{left}/image_rect"),
        ("left/camera_info", f"{left}/camera_info"),
        ("right/image_rect", f"{right}/image_rect"),
        ("right/camera_info", f"{right}/camera_info"),
    ]
    actions = [
        Node(
            package="lunar_recon",
            executable="stereo_node",
            name="stereo_node",
            namespace=namespace,
            output="screen",
            parameters=[cfg["params_file"], overrides],
            remappings=remap,
            on_exit=Shutdown(reason="stereo_node exited"),
        )
    ]
    if _is_true(cfg["rviz"]):
        rviz_config = PathJoinSubstitution([FindPackageShare("lunar_recon"), "config", "lunar_recon.rviz"])
        # Same namespace and clock as the node: the config's relative topics resolve to its outputs.
        actions.append(
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz2",
                namespace=namespace,
                output="screen",
                arguments=["-d", rviz_config],
                parameters=[{"use_sim_time": sim_time}],
                remappings=remap[:1],
                on_exit=Shutdown(reason="rviz2 exited"),
            )
        )
    return actions


def generate_launch_description():
    args = [
        DeclareLaunchArgument(
            name, default_value=PARAMS_FILE_DEFAULT if name == "params_file" else default, description=description
        )
        for name, (default, description) in ARGUMENTS.items()
    ]
    return LaunchDescription(args + [OpaqueFunction(function=_actions)])
