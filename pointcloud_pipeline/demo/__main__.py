"""``python -m pointcloud_pipeline.demo`` (see :mod:`pointcloud_pipeline.demo.run`)."""
import sys

from pointcloud_pipeline.demo.run import main

sys.exit(main())
