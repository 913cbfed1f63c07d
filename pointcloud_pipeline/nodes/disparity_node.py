"""ROS 2 node: depth_image_proc's ``disparity``.

Subscribes ``left/image_rect`` (sensor_msgs/Image 16UC1 / mono16 in ``depth_scale`` metres per
unit, or 32FC1 metres) and ``right/camera_info`` (the right camera of the stereo pair: f = its
P[0], baseline T = -P[3] / P[0] metres, as depth_image_proc; binning and ROI applied to f, and
the depth image must have its size). Publishes ``left/disparity`` (stereo_msgs/DisparityImage:
32FC1 ``d = f T / Z``, 0 where there is no reading; f, t, min/max disparity from ``min_range``
/ ``max_range``, ``delta_d``, valid_window), both headers copied from the depth image.

Pairing: each depth image uses the latest valid camera_info (depth_image_proc pairs them by
exact stamp); a calibration rarely changes, and a driver that publishes camera_info late or at
another rate still works. A camera_info that cannot be used (no baseline: P[3] >= 0, zeros,
bad binning/ROI) is counted as the event ``camera_info_rejected`` and warned about; frames
before a valid one are dropped as ``no_camera_info``. See
:func:`pointcloud_pipeline.depth_images.disparity_from_depth` for where the values differ from
depth_image_proc. Lazy, bad frames dropped and counted, ``/diagnostics``
(:mod:`..ros.image_relay`). Parameters: config/depth_images.yaml (section disparity).
"""
import math
import sys

import numpy as np
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, RegionOfInterest
from stereo_msgs.msg import DisparityImage

from ..depth_images import disparity_from_depth
from ..ros.camera_messages import pixels_to_image
from ..ros.executable import run_node
from ..ros.image_relay import ImageRelayNode
from ..ros.message_checks import FrameError, camera_model, check_camera_matches


def stereo_camera(info):
    """(CameraModel, focal length pixels, baseline metres) of a right camera's CameraInfo;
    FrameError 'bad_camera_info' when it has no usable P or baseline."""
    model = camera_model(info, use_projection_matrix=True)
    if model.fallback is not None:
        raise FrameError('bad_camera_info', 'right camera_info P is all zeros: no baseline')
    p = [float(value) for value in info.p]
    baseline = -p[3] / p[0]
    if not (math.isfinite(baseline) and baseline > 0):
        raise FrameError('bad_camera_info', f'right camera_info has no positive baseline: '
                                            f'-P[3] / P[0] = {baseline:g} (P[3] = -fx * T)')
    return model, model.intrinsics.fx, baseline


class DisparityNode(ImageRelayNode):
    """``left/image_rect`` + ``right/camera_info`` -> ``left/disparity``; see the module
    docstring."""

    INPUT = 'left/image_rect'
    OUTPUT = 'left/disparity'
    OUTPUT_TYPE = DisparityImage

    def __init__(self, **kwargs):
        super().__init__('disparity', **kwargs)
        self.stereo = None
        # best effort + volatile matches every camera_info publisher
        self.create_subscription(CameraInfo, 'right/camera_info', self._on_camera_info,
                                 QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT))
        self.log_topics('with right/camera_info')

    def declare_own_parameters(self, params):
        d = params.declare
        d('depth_scale', 0.001, 'metres per 16UC1/mono16 depth unit', value_range=(1e-9, 1000.0))
        d('min_range', 0.0, 'metres; max_disparity = f T / min_range',
          value_range=(0.0, math.inf))
        d('max_range', math.inf, 'metres; min_disparity = f T / max_range',
          value_range=(0.0, math.inf))
        d('delta_d', 0.125, 'pixels; smallest disparity increment', value_range=(1e-6, 1000.0))

    def node_settings(self, values):
        settings = {name: float(values[name]) for name in ('depth_scale', 'min_range',
                                                           'max_range', 'delta_d')}
        if not settings['min_range'] < settings['max_range']:
            raise ValueError(f'min_range ({settings["min_range"]}) must be smaller than '
                             f'max_range ({settings["max_range"]})')
        return settings

    def _on_camera_info(self, info):
        try:
            self.stereo = stereo_camera(info)
        except FrameError as error:
            self.statistics.count_event('camera_info_rejected')
            self.warnings.warn(error.reason, f'ignoring right/camera_info: {error}')
        except Exception as error:  # noqa: BLE001 - nothing may escape a callback
            self.statistics.count_event('camera_info_rejected')
            self.warnings.warn('internal_error', f'ignoring right/camera_info: {error!r}')

    def convert(self, msg, pixels):
        if self.stereo is None:
            raise FrameError('no_camera_info', 'no valid right/camera_info received yet')
        model, focal_length, baseline = self.stereo
        check_camera_matches(model, pixels.shape)
        settings = self.settings
        disparity = disparity_from_depth(
            pixels, focal_length, baseline, depth_scale=settings['depth_scale'],
            min_range=settings['min_range'], max_range=settings['max_range'],
            delta_d=settings['delta_d'],
            out=self.output_image(pixels.shape, np.dtype(np.float32)))
        window = disparity.valid_window
        return DisparityImage(
            header=msg.header,
            image=pixels_to_image(disparity.image, '32FC1', msg.header, self.buffer),
            f=disparity.f, t=disparity.t,
            valid_window=RegionOfInterest(x_offset=window.x_offset, y_offset=window.y_offset,
                                          width=window.width, height=window.height),
            min_disparity=disparity.min_disparity, max_disparity=disparity.max_disparity,
            delta_d=disparity.delta_d)


def main(args=None):
    return run_node(DisparityNode, args)


if __name__ == '__main__':
    sys.exit(main())
