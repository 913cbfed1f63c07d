"""Batch tools for data at rest (``python -m pointcloud_pipeline COMMAND``), each a small module
on the shared runner (:mod:`.runner`: inputs, executors, atomic writes, resume, summary)."""
