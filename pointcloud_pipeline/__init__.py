"""pointcloud_pipeline: fast point-cloud processing for ROS 2 robots.

The top-level modules are the maths library and import no ROS package: each public module
(``depth``, ``bev``) documents units and layouts and validates arguments, and calls the private
Cython kernel beside it (``_depth.pyx``, ``_bev.pyx``) that holds only the hot loop; ``camera``,
``transforms``, ``layouts`` and ``files`` are the small helpers they share. Subpackages:

- ``monodepth``: monocular depth (model profiles, pre/post-processing, the tinygrad runner);
- ``ros``: ROS message plumbing (views and packing, checks, stamp sync, diagnostics,
  parameters, the DDS environment, the node executables' main());
- ``nodes``: one ROS 2 node class per module, with its ``main()``;
- ``batch``: the file tools on one shared runner, and the ``pointcloud_pipeline`` command line;
- ``demo``: ``make demo`` and its sources (synthetic camera, dataset/bag replay, recording).
"""

__version__ = '0.1.0'
