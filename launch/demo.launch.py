"""The demo on a ROS 2 install: synthetic depth camera -> pointcloud_pipeline (-> rviz2).

    ros2 launch pointcloud_pipeline demo.launch.py
    ros2 launch pointcloud_pipeline demo.launch.py rviz:=true  # with rviz2 (when installed)
    ros2 launch pointcloud_pipeline demo.launch.py registered:=false  # + register_node

The bare-machine equivalent, which also records the outputs, is `make demo`.
Arguments: namespace, rate (Hz), width, height, publish_rgb, registered (false: an unregistered
camera, its colour from a second camera 25 mm to the right, and register_node reprojecting depth
into it; the cloud is then in the colour camera's frame, camera_color_optical_frame), rviz,
use_large_data_profile.
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
    pipeline_params = PathJoinSubstitution([share, 'config', 'pipeline.yaml'])
    register_params = PathJoinSubstitution([share, 'config', 'register.yaml'])
    demo_params = PathJoinSubstitution([share, 'config', 'demo.yaml'])  # overrides for the room
    arguments = [
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of every node and topic'),
        DeclareLaunchArgument('rate', default_value='30.0', description='camera frame rate, Hz'),
        DeclareLaunchArgument('width', default_value='640', description='image width, pixels'),
        DeclareLaunchArgument('height', default_value='480', description='image height, pixels'),
        DeclareLaunchArgument('publish_rgb', default_value='true', choices=['true', 'false'],
                              description='synthetic colour image (XYZRGB cloud)'),
        DeclareLaunchArgument('registered', default_value='true', choices=['true', 'false'],
                              description='false: an unregistered camera (separate colour '
                                          'camera) and register_node'),
        DeclareLaunchArgument('rviz', default_value='false', choices=['true', 'false'],
                              description='start rviz2 with rviz/pipeline.rviz (needs rviz2 '
                                          'installed)'),
        DeclareLaunchArgument('use_large_data_profile', default_value='true',
                              choices=['true', 'false'],
                              description='Fast DDS shared-memory profile, DDS confined to this '
                                          'host (config/fastdds_large_data_loopback.xml)'),
    ]
    large_data_profile = SetEnvironmentVariable(
        fastdds_profiles_variable(),  # Fast DDS 2.x (Jazzy) and 3.x read different ones
        PathJoinSubstitution([share, 'config', 'fastdds_large_data_loopback.xml']),
        condition=IfCondition(LaunchConfiguration('use_large_data_profile')))
    camera = Node(
        package='pointcloud_pipeline',
        executable='synthetic_camera_node',
        name='synthetic_camera',
        namespace=LaunchConfiguration('namespace'),
        parameters=[demo_params, {
            'rate': LaunchConfiguration('rate'),
            'width': LaunchConfiguration('width'),
            'height': LaunchConfiguration('height'),
            'publish_rgb': LaunchConfiguration('publish_rgb'),
            'registered': LaunchConfiguration('registered'),
        }],
        output='screen',
    )
    register = Node(
        package='pointcloud_pipeline',
        executable='register_node',
        name='register_node',
        namespace=LaunchConfiguration('namespace'),
        parameters=[register_params, demo_params],  # demo.yaml: the rig's extrinsic
        condition=UnlessCondition(LaunchConfiguration('registered')),
        output='screen',
    )
    pipeline = Node(
        package='pointcloud_pipeline',
        executable='pipeline_node',
        name='pointcloud_pipeline',
        namespace=LaunchConfiguration('namespace'),
        parameters=[pipeline_params, demo_params,
                    {'use_rgb': LaunchConfiguration('publish_rgb')}],
        remappings=[
            ('depth/image_rect', registered_or('depth/image_rect', 'depth_registered/image_rect')),
            ('depth/camera_info',
             registered_or('depth/camera_info', 'depth_registered/camera_info')),
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
                                          large_data_profile, camera, register, pipeline,
                                          rviz])
