"""The browser page of the live view: a viser server (ROS-free) showing the latest cloud in 3D
and the latest BEV image in its side panel.

viser keeps, per browser, only the newest pending update of each property (its message buffer
replaces an unsent update of the same property), so a browser slower than the clouds skips
frames instead of queueing them; :class:`CloudViewer` adds no queue of its own.
"""
import threading

import numpy as np

from .display import UP_AXES, page_url

CLOUD_NODE = '/cloud'


def camera_pose(points, up):
    """(position, look_at) of a camera that sees ``points`` ((N, 3) metres) from behind the
    sensor and above, ``up`` an :data:`~.display.UP_AXES` name: it looks at the points' median
    from twice their spread back along the sensor -> median direction (across it: any
    horizontal axis when the median is near the sensor, as in a LiDAR scan) and one spread up."""
    up_vector = np.asarray(UP_AXES[up], np.float64)
    points = np.asarray(points, np.float64)
    target = np.median(points, axis=0) if len(points) else np.zeros(3)
    forward = target - up_vector * float(target @ up_vector)
    if np.linalg.norm(forward) < 0.5:
        forward = np.roll(np.abs(up_vector), 1)  # +x for z up, +z for y up, +y for x up
    forward /= np.linalg.norm(forward)
    spread = 1.0
    if len(points):
        spread = max(1.0, float(np.percentile(np.linalg.norm(points - target, axis=1), 90)))
    position = target - forward * 2.0 * spread + up_vector * spread
    return tuple(position), tuple(target)


class CloudViewer:
    """A viser server on ``host``:``port`` (the next free port when that one is taken: see
    :attr:`url`) drawing :class:`~.display.DisplayCloud` s and BEV images. Thread-safe.

    point_size: metres; up: the clouds' up axis (:data:`~.display.UP_AXES`).
    """

    def __init__(self, host='127.0.0.1', port=8080, *, point_size=0.02, up='-y',
                 label='pointcloud_pipeline'):
        import viser
        if up not in UP_AXES:
            raise ValueError(f'up must be one of {tuple(UP_AXES)}, got {up!r}')
        if not point_size > 0:
            raise ValueError(f'point_size must be > 0 metres, got {point_size!r}')
        self.up = up
        self.point_size = float(point_size)
        self._lock = threading.Lock()
        self._server = viser.ViserServer(host=host, port=int(port), label=label, verbose=False)
        self._server.scene.set_up_direction(up)
        self._status = self._server.gui.add_markdown('waiting for the first cloud')
        self._cloud = None
        self._bev = None
        self.clouds_shown = 0
        self.images_shown = 0

    @property
    def host(self):
        return self._server.get_host()

    @property
    def port(self):
        """The port actually served."""
        return self._server.get_port()

    @property
    def url(self):
        return page_url(self.host, self.port)

    def client_count(self):
        """Browsers connected now."""
        return len(self._server.get_clients())

    def show_cloud(self, cloud, caption=''):
        """Draw ``cloud`` (a :class:`~.display.DisplayCloud`) instead of the previous one; the
        first one also aims every browser's camera at it (later ones leave the camera to the
        user). ``caption``: a line of text shown in the panel (e.g. the frame and stamp)."""
        with self._lock:
            with self._server.atomic():
                if self._cloud is None:
                    self._cloud = self._server.scene.add_point_cloud(
                        CLOUD_NODE, cloud.points, cloud.colors, point_size=self.point_size,
                        point_shape='square', point_shading='flat')
                    self._aim_cameras(cloud.points)
                else:
                    self._cloud.points = cloud.points
                    self._cloud.colors = cloud.colors
                self._status.content = (
                    f'{len(cloud.points):,} of {cloud.finite_points:,} points, coloured by '
                    f'{cloud.colored_by}' + (f'  \n{caption}' if caption else ''))
            self.clouds_shown += 1

    def _aim_cameras(self, points):
        position, look_at = camera_pose(points, self.up)
        up = UP_AXES[self.up]
        self._server.initial_camera.position = position
        self._server.initial_camera.look_at = look_at
        self._server.initial_camera.up = up
        for client in self._server.get_clients().values():
            client.camera.up_direction = up
            client.camera.position = position
            client.camera.look_at = look_at

    def show_bev(self, rgb):
        """Show ``rgb`` ((H, W, 3) uint8 red, green, blue) as the panel's BEV image."""
        with self._lock:
            if self._bev is None:
                self._bev = self._server.gui.add_image(rgb, label="bird's-eye view",
                                                       format='jpeg')
            else:
                self._bev.image = rgb
            self.images_shown += 1

    def stop(self):
        self._server.stop()
