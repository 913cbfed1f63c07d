"""ROS 2 plumbing shared by the nodes: message views and packing, checks of incoming messages,
stamp synchronisation, diagnostics, parameters and settings, the DDS environment, and the
node executables' ``main()``. Holds no maths (that is the top-level library) and imports no
node."""
