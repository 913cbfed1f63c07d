"""``python -m pointcloud_pipeline COMMAND ...`` (see pointcloud_pipeline.cli)."""
import sys

from pointcloud_pipeline.cli import main

sys.exit(main())
