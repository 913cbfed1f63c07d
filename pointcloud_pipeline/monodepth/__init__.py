"""Monocular depth (see :mod:`.estimator`)."""
from .estimator import *  # noqa: F401,F403  (temporary during the split)
