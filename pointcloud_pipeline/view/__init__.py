"""The live 3D view in the browser: ``python -m pointcloud_pipeline view``.

- :mod:`.display`: what is drawn (finite points decimated to a budget, coloured by rgb or
  height), ROS-free;
- :mod:`.server`: the page (a viser server on loopback by default), ROS-free;
- :mod:`.view_node`: the ROS 2 node feeding it (``points`` and ``bev/image``, best effort,
  depth 1);
- :mod:`.command`: the command line (``add_arguments``, ``checked_run`` for the CLI).
"""
