"""Depth camera -> PointCloud2 + BEV image: the pointcloud_pipeline node (and rviz2).

    ros2 launch pointcloud_pipeline pipeline.launch.py \
        depth_topic:=/camera/depth/image_rect_raw camera_info_topic:=/camera/depth/camera_info

    # a camera whose depth is not aligned to colour (Kinect-type, Azure Kinect, Orbbec):
    ros2 launch pointcloud_pipeline pipeline.launch.py registered:=false \
        rgb_info_topic:=/camera/color/camera_info  # + use_rgb: true in your params_file

Arguments: namespace, depth_topic, camera_info_topic, rgb_topic, rgb_info_topic,
intensity_topic, points_topic, bev_topic, params_file (default: the installed
config/pipeline.yaml), registered (default true; false adds register_node, depth_image_proc's
register, between the depth camera and the pipeline: its extrinsic comes from TF, else from
register_params_file's depth_to_rgb_transform), register_params_file (default: the installed
config/register.yaml), rviz (true/false),
use_large_data_profile (default true: config/fastdds_large_data.xml, Fast DDS shared memory
with 64 MiB segments for multi-MB messages; UDP to other hosts as usual; false keeps your own
FASTDDS_DEFAULT_PROFILES_FILE, FASTRTPS_DEFAULT_PROFILES_FILE on Jazzy).
"""
from ament_index_python.packages import get_package_prefix, PackageNotFoundError
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from pointcloud_pipeline.ros.compat import fastdds_profiles_variable


def require_rviz2(context):
    """rviz:=true where rviz2 is not installed (an optional package: package.xml does not depend
    on it): stop with the reason before any node starts. Launching the rviz2 node itself would
    fail only after the other nodes started, and leave them running."""
    if IfCondition(LaunchConfiguration('rviz')).evaluate(context):
        try:
            get_package_prefix('rviz2')
        except PackageNotFoundError:
            raise RuntimeError("rviz:=true needs the package 'rviz2', which is not installed "
                               "(sudo apt install ros-$ROS_DISTRO-rviz2), or launch with "
                               "rviz:=false; no node was started") from None
    return []


def registered_or(topic, registered_topic):
    """``topic``, or ``registered_topic`` (an output of register_node) when ``registered`` is
    false."""
    return PythonExpression(["'", registered_topic, "' if '", LaunchConfiguration('registered'),
                             "'.lower() == 'false' else '", topic, "'"])


def generate_launch_description():
    share = FindPackageShare('pointcloud_pipeline')
    arguments = [
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of the node and its relative topics'),
        DeclareLaunchArgument('depth_topic', default_value='depth/image_rect',
                              description='depth image (16UC1, mono16 or 32FC1)'),
        DeclareLaunchArgument('camera_info_topic', default_value='depth/camera_info',
                              description='camera info of the depth image'),
        DeclareLaunchArgument('rgb_topic', default_value='rgb/image_rect_color',
                              description='colour image (use_rgb: true); registered to depth '
                                          'unless registered:=false'),
        DeclareLaunchArgument('rgb_info_topic', default_value='rgb/camera_info',
                              description='camera info of the colour image (registered:=false)'),
        DeclareLaunchArgument('intensity_topic', default_value='intensity/image_rect',
                              description='intensity / infrared image registered to depth '
                                          '(use_intensity: true)'),
        DeclareLaunchArgument('points_topic', default_value='points',
                              description='output PointCloud2'),
        DeclareLaunchArgument('bev_topic', default_value='bev/image',
                              description='output BEV image (bgr8)'),
        DeclareLaunchArgument('params_file',
                              default_value=PathJoinSubstitution([share, 'config',
                                                                  'pipeline.yaml']),
                              description='parameters of the pipeline node'),
        DeclareLaunchArgument('registered', default_value='true', choices=['true', 'false'],
                              description='false: depth is in the depth camera, not aligned to '
                                          'colour; register_node reprojects it into the colour '
                                          'camera first'),
        DeclareLaunchArgument('register_params_file',
                              default_value=PathJoinSubstitution([share, 'config',
                                                                  'register.yaml']),
                              description='parameters of register_node (registered:=false)'),
        DeclareLaunchArgument('rviz', default_value='false', choices=['true', 'false'],
                              description='start rviz2 with rviz/pipeline.rviz'),
        DeclareLaunchArgument('use_large_data_profile', default_value='true',
                              choices=['true', 'false'],
                              description='Fast DDS profile with 64 MiB shared-memory segments '
                                          'for multi-MB messages (config/fastdds_large_data.xml)'),
    ]
    large_data_profile = SetEnvironmentVariable(
        fastdds_profiles_variable(),  # Fast DDS 2.x (Jazzy) and 3.x read different ones
        PathJoinSubstitution([share, 'config', 'fastdds_large_data.xml']),
        condition=IfCondition(LaunchConfiguration('use_large_data_profile')))
    register = Node(
        package='pointcloud_pipeline',
        executable='register_node',
        name='register_node',
        namespace=LaunchConfiguration('namespace'),
        parameters=[LaunchConfiguration('register_params_file')],
        remappings=[
            ('depth/image_rect', LaunchConfiguration('depth_topic')),
            ('depth/camera_info', LaunchConfiguration('camera_info_topic')),
            ('rgb/camera_info', LaunchConfiguration('rgb_info_topic')),
        ],
        condition=UnlessCondition(LaunchConfiguration('registered')),
        output='screen',
    )
    pipeline = Node(
        package='pointcloud_pipeline',
        executable='pipeline_node',
        name='pointcloud_pipeline',
        namespace=LaunchConfiguration('namespace'),
        parameters=[LaunchConfiguration('params_file')],
        remappings=[
            ('depth/image_rect', registered_or(LaunchConfiguration('depth_topic'),
                                               'depth_registered/image_rect')),
            ('depth/camera_info', registered_or(LaunchConfiguration('camera_info_topic'),
                                                'depth_registered/camera_info')),
            ('rgb/image_rect_color', LaunchConfiguration('rgb_topic')),
            ('intensity/image_rect', LaunchConfiguration('intensity_topic')),
            ('points', LaunchConfiguration('points_topic')),
            ('bev/image', LaunchConfiguration('bev_topic')),
        ],
        output='screen',
    )
    rviz = Node(
        package='rviz2',
        executable='rviz2',
        name='rviz2',
        namespace=LaunchConfiguration('namespace'),
        arguments=['-d', PathJoinSubstitution([share, 'rviz', 'pipeline.rviz'])],
        condition=IfCondition(LaunchConfiguration('rviz')),
        output='screen',
    )
    return LaunchDescription(arguments + [OpaqueFunction(function=require_rviz2),
                                          large_data_profile, register, pipeline, rviz])
