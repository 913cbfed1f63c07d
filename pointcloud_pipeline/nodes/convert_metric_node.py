"""ROS 2 node: depth_image_proc's ``convert_metric``.

Subscribes ``image_raw`` (sensor_msgs/Image 16UC1 / mono16 in ``depth_scale`` metres per unit,
or 32FC1 metres); publishes ``image``: 32FC1 metres (NaN where there is no reading) for a
16-bit input, 16UC1 units (0 where there is none) for a 32FC1 input, as depth_image_proc;
header copied. See :func:`pointcloud_pipeline.depth_images.convert_metric` for the rules and
where they differ from depth_image_proc (``depth_scale``, rounding instead of truncation).
Lazy, bad frames dropped and counted, ``/diagnostics`` (:mod:`..ros.image_relay`).
Parameters: config/depth_images.yaml (section convert_metric).
"""
import sys

import numpy as np

from ..depth_images import convert_metric
from ..ros.camera_messages import pixels_to_image
from ..ros.executable import run_node
from ..ros.image_relay import ImageRelayNode


class ConvertMetricNode(ImageRelayNode):
    """``image_raw`` -> ``image`` in the other depth encoding; see the module docstring."""

    def __init__(self, **kwargs):
        super().__init__('convert_metric', **kwargs)
        self.log_topics('16UC1/mono16 <-> 32FC1')

    def declare_own_parameters(self, params):
        params.declare('depth_scale', 0.001, 'metres per 16UC1/mono16 depth unit',
                       value_range=(1e-9, 1000.0))

    def node_settings(self, values):
        return {'depth_scale': float(values['depth_scale'])}

    def convert(self, msg, pixels):
        to_metres = pixels.dtype == np.uint16
        out = self.output_image(pixels.shape, np.dtype(np.float32 if to_metres else np.uint16))
        image = convert_metric(pixels, self.settings['depth_scale'], out=out)
        return pixels_to_image(image, '32FC1' if to_metres else '16UC1', msg.header,
                               self.buffer)


def main(args=None):
    return run_node(ConvertMetricNode, args)


if __name__ == '__main__':
    sys.exit(main())
