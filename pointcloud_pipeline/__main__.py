"""``python -m pointcloud_pipeline COMMAND ...`` (see pointcloud_pipeline.batch.cli)."""
import sys

from pointcloud_pipeline.batch.cli import main

sys.exit(main())
