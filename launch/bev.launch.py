"""Any PointCloud2 (e.g. a LiDAR's) -> BEV image: the bev_node.

    ros2 launch pointcloud_pipeline bev.launch.py points_topic:=/velodyne_points

Arguments: namespace, points_topic, bev_topic, params_file (default: the installed
config/pipeline.yaml, section bev_node), use_large_data_profile (default true:
config/fastdds_large_data.xml, 64 MiB shared-memory segments for multi-MB messages).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from pointcloud_pipeline.ros.compat import fastdds_profiles_variable


def generate_launch_description():
    share = FindPackageShare('pointcloud_pipeline')
    arguments = [
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of the node and its relative topics'),
        DeclareLaunchArgument('points_topic', default_value='points',
                              description='input PointCloud2 (x, y, z float32 [+ intensity])'),
        DeclareLaunchArgument('bev_topic', default_value='bev/image',
                              description='output BEV image (bgr8)'),
        DeclareLaunchArgument('params_file',
                              default_value=PathJoinSubstitution([share, 'config',
                                                                  'pipeline.yaml']),
                              description='parameters of the bev node'),
        DeclareLaunchArgument('use_large_data_profile', default_value='true',
                              choices=['true', 'false'],
                              description='Fast DDS profile with 64 MiB shared-memory segments '
                                          'for multi-MB messages (config/fastdds_large_data.xml)'),
    ]
    large_data_profile = SetEnvironmentVariable(
        fastdds_profiles_variable(),  # Fast DDS 2.x (Jazzy) and 3.x read different ones
        PathJoinSubstitution([share, 'config', 'fastdds_large_data.xml']),
        condition=IfCondition(LaunchConfiguration('use_large_data_profile')))
    bev = Node(
        package='pointcloud_pipeline',
        executable='bev_node',
        name='bev_node',
        namespace=LaunchConfiguration('namespace'),
        parameters=[LaunchConfiguration('params_file')],
        remappings=[('points', LaunchConfiguration('points_topic')),
                    ('bev/image', LaunchConfiguration('bev_topic'))],
        output='screen',
    )
    return LaunchDescription(arguments + [large_data_profile, bev])
