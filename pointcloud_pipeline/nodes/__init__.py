"""ROS 2 nodes: one node class per module with its ``main()`` (the ``ros2 run`` executables).
Nodes hold parameters, QoS, callbacks and message packing; the maths is in the library."""
