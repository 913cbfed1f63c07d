"""pointcloud_pipeline: fast point-cloud processing for ROS 2 robots.

Public modules hold the documented API (argument checks, units, layouts); the private
``_*.pyx`` kernels beside them hold only the hot loops.
"""

__version__ = '0.1.0'
