"""Launch lunar_recon's stereo_node.

    ros2 launch lunar_recon stereo.launch.py [namespace:=stereo] [model:=/path/student.pt]
        [params_file:=...] [left_namespace:=left] [right_namespace:=right] [use_sim_time:=false] [rviz:=false]

Like stereo_image_proc's launch: the node subscribes to left/image_rect, left/camera_info,
right/image_rect, right/camera_info, remapped to <left_namespace>/... and <right_namespace>/...
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node

ARGUMENTS = {
    "namespace": ("", "namespace of the node and its output topics"),
    "params_file": ("", "parameter file (default: the package's config/stereo.yaml)"),
    "model": ("default", "checkpoint path, 'sgbm', 'sgbm-wls' or 'default' (the shipped student)"),
    "use_sim_time": ("false", "use /clock (bag replay)"),
    "left_namespace": ("left", "namespace of the left camera topics"),
    "right_namespace": ("right", "namespace of the right camera topics"),
    "rviz": ("false", "start rviz2 with config/lunar_recon.rviz"),
}


def generate_launch_description():
    share = get_package_share_directory("lunar_recon")
    default_params = os.path.join(share, "config", "stereo.yaml")
    args = [DeclareLaunchArgument(name, default_value=default, description=description)
            for name, (default, description) in ARGUMENTS.items()]
    params_file = PythonExpression(["'", LaunchConfiguration("params_file"), "' or '", default_params, "'"])
    left, right = LaunchConfiguration("left_namespace"), LaunchConfiguration("right_namespace")
    node = Node(
        package="lunar_recon", executable="stereo_node", name="stereo_node", namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[params_file, {"model": LaunchConfiguration("model"),
                                  "use_sim_time": PythonExpression(["'", LaunchConfiguration("use_sim_time"),
                                                                    "'.lower() == 'true'"])}],
        remappings=[("left/image_rect", [left, "/image_rect"]), ("left/camera_info", [left, "/camera_info"]),
                    ("right/image_rect", [right, "/image_rect"]), ("right/camera_info", [right, "/camera_info"])],
    )
    rviz = Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
                arguments=["-d", os.path.join(share, "config", "lunar_recon.rviz")],
                condition=IfCondition(LaunchConfiguration("rviz")))
    return LaunchDescription(args + [node, rviz])
