"""The demo on a ROS 2 install: synthetic depth camera -> pointcloud_pipeline (-> rviz2).

    ros2 launch pointcloud_pipeline demo.launch.py            # with rviz2
    ros2 launch pointcloud_pipeline demo.launch.py rviz:=false

The bare-machine equivalent, which also records the outputs, is `make demo`.
Arguments: namespace, rate (Hz), width, height, publish_rgb, rviz, use_large_data_profile.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare('pointcloud_pipeline')
    pipeline_params = PathJoinSubstitution([share, 'config', 'pipeline.yaml'])
    demo_params = PathJoinSubstitution([share, 'config', 'demo.yaml'])  # overrides for the room
    arguments = [
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of every node and topic'),
        DeclareLaunchArgument('rate', default_value='30.0', description='camera frame rate, Hz'),
        DeclareLaunchArgument('width', default_value='640', description='image width, pixels'),
        DeclareLaunchArgument('height', default_value='480', description='image height, pixels'),
        DeclareLaunchArgument('publish_rgb', default_value='true', choices=['true', 'false'],
                              description='synthetic colour image (XYZRGB cloud)'),
        DeclareLaunchArgument('rviz', default_value='true', choices=['true', 'false'],
                              description='start rviz2'),
        DeclareLaunchArgument('use_large_data_profile', default_value='true',
                              choices=['true', 'false'],
                              description='Fast DDS shared-memory profile, DDS confined to this '
                                          'host (config/fastdds_large_data_loopback.xml)'),
    ]
    large_data_profile = SetEnvironmentVariable(
        'FASTDDS_DEFAULT_PROFILES_FILE',
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
        }],
        output='screen',
    )
    pipeline = Node(
        package='pointcloud_pipeline',
        executable='pipeline_node',
        name='pointcloud_pipeline',
        namespace=LaunchConfiguration('namespace'),
        parameters=[pipeline_params, demo_params,
                    {'use_rgb': LaunchConfiguration('publish_rgb')}],
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
    return LaunchDescription(arguments + [large_data_profile, camera, pipeline, rviz])
