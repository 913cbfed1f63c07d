"""Build and install pointcloud_pipeline (ament_python package with Cython/OpenMP kernels)."""
from glob import glob
import os

from Cython.Build import cythonize
import numpy
from setuptools import Extension, find_packages, setup

package_name = 'pointcloud_pipeline'
here = os.path.dirname(os.path.abspath(__file__))

# One private kernel per concern, beside its public module: every _*.pyx in the package and its
# subpackages (pointcloud_pipeline/_depth.pyx, pointcloud_pipeline/demo/_synthetic.pyx, ...)
# becomes an extension module of the same dotted name.
kernel_sources = sorted(glob(os.path.join(package_name, '**', '_*.pyx'), root_dir=here,
                             recursive=True))
extensions = [
    Extension(
        os.path.splitext(source)[0].replace(os.sep, '.'),
        [source],
        include_dirs=[numpy.get_include()],
        depends=sorted(glob(os.path.join(package_name, '_*.h'), root_dir=here)),  # _workers.h
        define_macros=[('NPY_NO_DEPRECATED_API', 'NPY_1_7_API_VERSION')],
        extra_compile_args=['-O3', '-fopenmp'],
        extra_link_args=['-fopenmp'],
    )
    for source in kernel_sources
]


def installed(subdir, pattern):
    """(install dir, files) for data_files; share/<package>/<subdir> (files only, not folders)."""
    files = sorted(f for f in glob(os.path.join(subdir, pattern)) if os.path.isfile(f))
    return (os.path.join('share', package_name, subdir), files)


setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(include=[package_name, f'{package_name}.*']),
    package_data={'': ['*.pyx', '*.h']},
    ext_modules=cythonize(
        extensions,
        language_level=3,
        quiet=True,  # colcon parses setup.py's stdout: cythonize must not print
        compiler_directives={'boundscheck': False, 'wraparound': False, 'cdivision': True},
    ),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        installed('launch', '*.launch.py'),
        installed('config', '*'),
        installed(os.path.join('config', 'models'), '*.yaml'),
        installed('rviz', '*.rviz'),
    ],
    install_requires=['setuptools'],
    zip_safe=False,
    maintainer='pointcloud_pipeline maintainers',
    maintainer_email='maintainers@pointcloud-pipeline.dev',
    description='Fast depth image to PointCloud2, BEV images and batch point-cloud tools for ROS 2.',
    license='Apache-2.0',
    extras_require={'test': ['pytest']},
    entry_points={
        'console_scripts': [
            'pointcloud_pipeline = pointcloud_pipeline.batch.cli:main',
            'bev_batch = pointcloud_pipeline.batch.bev:main',
            'normals = pointcloud_pipeline.batch.normals:main',
            'raster = pointcloud_pipeline.batch.raster:main',
            'raster_map = pointcloud_pipeline.batch.raster_map:main',
            'depth_estimator_node = pointcloud_pipeline.nodes.depth_estimator_node:main',
            'pipeline_node = pointcloud_pipeline.nodes.pipeline_node:main',
            'bev_node = pointcloud_pipeline.nodes.bev_node:main',
            'synthetic_camera_node = pointcloud_pipeline.nodes.synthetic_camera_node:main',
            'recorder_node = pointcloud_pipeline.nodes.recorder_node:main',
            'replay_node = pointcloud_pipeline.nodes.replay_node:main',
            'register_node = pointcloud_pipeline.nodes.register_node:main',
            'convert_metric_node = pointcloud_pipeline.nodes.convert_metric_node:main',
            'crop_foremost_node = pointcloud_pipeline.nodes.crop_foremost_node:main',
            'disparity_node = pointcloud_pipeline.nodes.disparity_node:main',
        ],
    },
)
