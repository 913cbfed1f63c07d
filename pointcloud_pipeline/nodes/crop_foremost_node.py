"""ROS 2 node: depth_image_proc's ``crop_foremost``.

Subscribes ``image_raw`` (sensor_msgs/Image 16UC1 / mono16 in ``depth_scale`` metres per unit,
or 32FC1 metres); publishes ``image``, same encoding and size, header copied: only the pixels
at most ``distance`` metres behind the nearest valid pixel are kept, the others become 0
(16-bit) or NaN (32FC1). See :func:`pointcloud_pipeline.depth_images.crop_foremost` (unlike
depth_image_proc, ``distance`` is metres for every encoding, not the image's units).
Lazy, bad frames dropped and counted, ``/diagnostics`` (:mod:`..ros.image_relay`).
Parameters: config/depth_images.yaml (section crop_foremost).
"""
import sys

from ..depth_images import crop_foremost
from ..ros.camera_messages import pixels_to_image
from ..ros.executable import run_node
from ..ros.image_relay import ImageRelayNode


class CropForemostNode(ImageRelayNode):
    """``image_raw`` -> ``image`` with only the foremost object; see the module docstring."""

    def __init__(self, **kwargs):
        super().__init__('crop_foremost', **kwargs)
        self.log_topics(f'distance {self.settings["distance"]:g} m')

    def declare_own_parameters(self, params):
        params.declare('distance', 0.0, 'metres behind the nearest pixel that are kept',
                       value_range=(0.0, 1000.0))
        params.declare('depth_scale', 0.001, 'metres per 16UC1/mono16 depth unit',
                       value_range=(1e-9, 1000.0))

    def node_settings(self, values):
        return {'distance': float(values['distance']),
                'depth_scale': float(values['depth_scale'])}

    def convert(self, msg, pixels):
        out = self.output_image(pixels.shape, pixels.dtype)
        image = crop_foremost(pixels, self.settings['distance'], self.settings['depth_scale'],
                              out=out)
        return pixels_to_image(image, msg.encoding, msg.header, self.buffer)


def main(args=None):
    return run_node(CropForemostNode, args)


if __name__ == '__main__':
    sys.exit(main())
