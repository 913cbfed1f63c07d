"""ROS 2 nodes: one node class per module with its ``main()`` (the ``ros2 run`` executables).
Nodes hold parameters, QoS, callbacks and message packing; the maths is in the library."""
import os

# The nodes' own processes: idle OpenMP threads (the synthetic camera's renderer, any OpenMP
# library loaded later) sleep instead of spinning against the camera driver and the other nodes.
# The depth and BEV kernels do not use OpenMP (see pointcloud_pipeline/_workers.h). Set before
# a kernel loads libgomp, which reads it once; an explicit setting in the environment wins.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
