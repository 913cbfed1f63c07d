"""Monocular depth to point cloud: depth_estimator_node -> pipeline_node (+ optional rviz2).

    ros2 launch pointcloud_pipeline monocular.launch.py \
        model_path:=/path/to/model-small.onnx profile:=midas_v21_small engine:=onnxruntime \
        image:=/camera/color/image_rect camera_info:=/camera/color/camera_info rviz:=true

Wiring (inside ``namespace``): the estimator's ``depth/image`` -> the pipeline's
``depth/image_rect``, the estimator's ``depth/camera_info`` -> the pipeline's
``depth/camera_info``; the cloud comes out on ``points``.
"""
from ament_index_python.packages import get_package_prefix, PackageNotFoundError
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from pointcloud_pipeline.ros.compat import fastdds_profiles_variable

ARGUMENTS = [
    ('image', '/camera/image_rect', 'colour image topic (rgb8, bgr8, rgba8, bgra8, mono8), '
                                    'rectified'),
    ('camera_info', '/camera/camera_info', 'camera_info topic of that image'),
    ('model_path', '', 'ONNX monocular depth model file (required)'),
    ('profile', 'midas_v21_small', 'model profile: midas_v21_small, depth_anything_v2_small, '
                                   'fastdepth_256x320, fastdepth_224x224 or a YAML path'),
    ('engine', 'tinygrad', "inference engine: tinygrad (any tinygrad device) or onnxruntime "
                           "(CPU only, faster there; pip install onnxruntime==1.31.1)"),
    ('device', '', "tinygrad device ('' = tinygrad default; CPU, CUDA, METAL, ...); engine "
                   "onnxruntime: '' or CPU"),
    ('max_rate', '0.0', 'most depth images per second, Hz (0 = as fast as inference allows)'),
    ('namespace', '', 'namespace of both nodes and their depth/points topics'),
    ('rviz', 'false', 'start rviz2 showing the depth image and the point cloud'),
    ('fixed_frame', 'camera_optical_frame', 'rviz2 fixed frame: the camera optical frame id'),
    ('use_large_data_profile', 'true', 'Fast DDS profile with 64 MiB shared-memory segments for '
                                       'multi-MB messages (config/fastdds_large_data.xml)'),
]


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


def generate_launch_description():
    namespace = LaunchConfiguration('namespace')
    # estimator -> pipeline carries a 1.2 MB 32FC1 image per VGA frame: with Fast DDS's default
    # 512 KiB shared-memory segment it goes as fragmented UDP and most frames are lost
    large_data_profile = SetEnvironmentVariable(
        fastdds_profiles_variable(),  # Fast DDS 2.x (Jazzy) and 3.x read different ones
        PathJoinSubstitution([FindPackageShare('pointcloud_pipeline'), 'config',
                              'fastdds_large_data.xml']),
        condition=IfCondition(LaunchConfiguration('use_large_data_profile')))
    estimator = Node(
        package='pointcloud_pipeline',
        executable='depth_estimator_node',
        name='depth_estimator',
        namespace=namespace,
        parameters=[{
            'model_path': ParameterValue(LaunchConfiguration('model_path'), value_type=str),
            'profile': ParameterValue(LaunchConfiguration('profile'), value_type=str),
            'engine': ParameterValue(LaunchConfiguration('engine'), value_type=str),
            'device': ParameterValue(LaunchConfiguration('device'), value_type=str),
            'max_rate': ParameterValue(LaunchConfiguration('max_rate'), value_type=float),
        }],
        remappings=[
            ('image', LaunchConfiguration('image')),
            ('camera_info', LaunchConfiguration('camera_info')),
        ],
        output='screen',
    )
    pipeline = Node(
        package='pointcloud_pipeline',
        executable='pipeline_node',
        name='pipeline',
        namespace=namespace,
        remappings=[
            ('depth/image_rect', 'depth/image'),
            ('depth/camera_info', 'depth/camera_info'),
        ],
        output='screen',
    )
    rviz = Node(
        package='rviz2',
        executable='rviz2',
        name='rviz2',
        namespace=namespace,
        arguments=[
            '-d', PathJoinSubstitution([FindPackageShare('pointcloud_pipeline'), 'rviz',
                                        'monocular.rviz']),
            '-f', LaunchConfiguration('fixed_frame'),
        ],
        condition=IfCondition(LaunchConfiguration('rviz')),
        output='screen',
    )
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=description)
         for name, default, description in ARGUMENTS]
        + [OpaqueFunction(function=require_rviz2), large_data_profile, estimator,
           pipeline, rviz])
