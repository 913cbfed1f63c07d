"""``make demo`` (``python -m pointcloud_pipeline.demo``) and its sources: the synthetic depth
camera's renderer, replay of RGB-D dataset folders and rosbag2 files, and the recorder's
output files."""
