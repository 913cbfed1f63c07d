"""The browser view (``python -m pointcloud_pipeline view``): what it draws from a real frame,
loopback by default, bad clouds counted over DDS, and a real headless browser showing the cloud."""
import re
import socket
import subprocess
import sys

import cv2
import numpy as np
import pytest
from rclpy.node import Node
from sensor_msgs.msg import Image, PointCloud2, PointField
from std_msgs.msg import Header

from browser_pages import (OutputLines, browser_page, hide_software_rendering_notice,
                           drawn_pixels, needs_browser, region_pixels, screenshot)
from conftest import REPO_ROOT
from message_builders import cloud_to_pointcloud2
from pointcloud_pipeline.bev import BevGrid, bev_image
from pointcloud_pipeline.camera import CameraIntrinsics
from pointcloud_pipeline.depth import depth_to_cloud
from pointcloud_pipeline.ros.camera_messages import pixels_to_image
from pointcloud_pipeline.ros.data_field import set_data
from pointcloud_pipeline.view.display import (decimation_indices, display_cloud, height_colors,
                                              host_warning, is_loopback, page_url, rgb_image)
from ros_helpers import spinning, wait_for_subscribers, wait_until

viser = pytest.importorskip('viser', reason='viser is not installed: pip install viser==1.1.1 '
                                            '(the browser view)')

SEVEN_SCENES = CameraIntrinsics(585.0, 585.0, 320.0, 240.0)  # camera-intrinsics.txt
OPTICAL_TO_BODY = np.array([[0, 0, 1, 0], [-1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 1]], float)
TIMEOUT = 30.0


@pytest.fixture(scope='module')
def real_cloud(seven_scenes_frame):
    """The organized XYZRGB cloud of a real 7-Scenes frame (NaN where depth is invalid)."""
    depth, color = seven_scenes_frame
    return depth_to_cloud(depth, SEVEN_SCENES, color=color, color_encoding='bgr8')


def test_decimation_keeps_evenly_spaced_points_within_the_budget():
    np.testing.assert_array_equal(decimation_indices(10, 3), [0, 3, 6])
    np.testing.assert_array_equal(decimation_indices(4, 10), [0, 1, 2, 3])
    indices = decimation_indices(307_200, 200_000)
    assert len(indices) == 200_000 and indices[-1] < 307_200
    assert (np.diff(indices) >= 1).all() and (np.diff(indices) <= 2).all()
    np.testing.assert_array_equal(indices, decimation_indices(307_200, 200_000))
    assert len(decimation_indices(0, 5)) == 0
    with pytest.raises(ValueError, match='budget'):
        decimation_indices(10, 0)


def test_a_real_frame_is_decimated_to_the_budget_with_its_colours(real_cloud):
    xyz = real_cloud.xyz().reshape(-1, 3)
    rgb = real_cloud.rgb().reshape(-1, 3)
    finite = np.flatnonzero(np.isfinite(xyz).all(axis=1))
    assert finite.size == real_cloud.valid_points > 200_000
    shown = display_cloud(real_cloud.data, real_cloud.width * real_cloud.height,
                          real_cloud.point_step, 0, 4, 8, 12, budget=50_000)
    expected = finite[decimation_indices(finite.size, 50_000)]
    assert shown.points.shape == (50_000, 3) and shown.colors.shape == (50_000, 3)
    assert shown.finite_points == finite.size and shown.colored_by == 'rgb'
    np.testing.assert_array_equal(shown.points, xyz[expected])
    np.testing.assert_array_equal(shown.colors, rgb[expected])
    everything = display_cloud(real_cloud.data, real_cloud.width * real_cloud.height,
                               real_cloud.point_step, 0, 4, 8, 12, budget=10**6)
    np.testing.assert_array_equal(everything.points, xyz[finite])


def test_height_colours_follow_the_up_axis_on_opencvs_turbo_map():
    points = np.array([[0, 1, 0], [0, 0, 5], [0, -1, 0]], np.float32)  # y down: low, mid, high
    cloud = display_cloud(points.tobytes(), 3, 12, 0, 4, 8, None, budget=10, up='-y',
                          height_range=(-1.0, 1.0))
    turbo = cv2.applyColorMap(np.array([[0], [127], [255]], np.uint8), cv2.COLORMAP_TURBO)
    np.testing.assert_array_equal(cloud.colors, turbo.reshape(3, 3)[:, ::-1])
    assert cloud.colored_by == 'height'
    by_z = display_cloud(points.tobytes(), 3, 12, 0, 4, 8, None, budget=10, up='+z',
                         height_range=(0.0, 5.0))
    np.testing.assert_array_equal(by_z.colors[1], turbo[2, 0, ::-1])  # z = 5: the top
    np.testing.assert_array_equal(height_colors([7.0, -7.0], (-1.0, 1.0)),
                                  turbo[[2, 0], 0, ::-1])  # clipped to the ends
    with pytest.raises(ValueError, match='height_range'):
        height_colors([0.0], (1.0, 1.0))


def test_bgr_and_mono_bev_images_become_rgb():
    bgr = np.zeros((2, 3, 3), np.uint8)
    bgr[..., 0] = 200  # blue
    np.testing.assert_array_equal(rgb_image(bgr, 'bgr8')[..., 2], 200)
    assert rgb_image(np.full((2, 3), 9, np.uint8), 'mono8').shape == (2, 3, 3)
    with pytest.raises(ValueError, match='encoding'):
        rgb_image(bgr, '16UC1')


def test_loopback_hosts_need_no_warning_and_others_get_one():
    for host in ('127.0.0.1', '127.0.0.2', 'localhost', '::1', '[::1]'):
        assert is_loopback(host) and host_warning(host, 8080) is None
    for host in ('0.0.0.0', '::', '192.168.1.20', 'robot.example.org'):
        warning = host_warning(host, 8080)
        assert not is_loopback(host) and 'not loopback' in warning and '8080' in warning
    assert page_url('::1', 80) == 'http://[::1]:80'


def listening_addresses(port):
    """Local IPv4 addresses with a TCP socket listening on ``port`` (from /proc/net/tcp)."""
    addresses = set()
    for line in open('/proc/net/tcp').read().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, local_port = local.split(':')
        if int(local_port, 16) == port and state == '0A':  # LISTEN
            addresses.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return addresses


def test_the_command_serves_on_loopback_by_default():
    import argparse
    from pointcloud_pipeline.view.command import add_arguments
    from pointcloud_pipeline.view.server import CloudViewer
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    defaults = parser.parse_args([])
    assert (defaults.host, defaults.port, defaults.max_points) == ('127.0.0.1', 8080, 200_000)
    viewer = CloudViewer(port=0)
    try:
        assert viewer.host == '127.0.0.1' and viewer.port > 0
        assert listening_addresses(viewer.port) == {'127.0.0.1'}
    finally:
        viewer.stop()


@pytest.mark.parametrize('argv,message', [
    (['--max-points', '0'], '--max-points must be >= 1'),
    (['--port', '70000'], '--port must be in 0..65535'),
    (['--height-range', '2', '1'], '--height-range needs LOW < HIGH'),
    (['--color', 'intensity'], "invalid choice: 'intensity'"),
])
def test_the_view_command_of_the_cli_checks_its_options(capsys, argv, message):
    from pointcloud_pipeline.batch import cli
    with pytest.raises(SystemExit) as exited:
        cli.main(['view', '--help'])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith('usage: pointcloud_pipeline view ')
    with pytest.raises(SystemExit) as exited:
        cli.main(['view', *argv])
    assert exited.value.code == 2 and message in capsys.readouterr().err


def xyz_cloud(points, fields=('x', 'y', 'z'), **overrides):
    """A PointCloud2 of float32 ``points`` (N x len(fields)), one row; ``overrides`` replace
    message fields after it is built (to make it bad)."""
    points = np.ascontiguousarray(points, np.float32)
    msg = PointCloud2(height=1, width=len(points), point_step=4 * len(fields),
                      row_step=4 * len(fields) * len(points), is_dense=True, is_bigendian=False)
    msg.header = Header(frame_id='camera')
    msg.fields = [PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                  for i, name in enumerate(fields)]
    set_data(msg, points)
    for name, value in overrides.items():
        setattr(msg, name, value)
    return msg


@pytest.mark.ros
def test_bad_clouds_are_dropped_and_counted_by_reason(rclpy_context):
    from pointcloud_pipeline.view.server import CloudViewer
    from pointcloud_pipeline.view.view_node import ViewNode, ViewSettings
    viewer = CloudViewer(port=0)
    try:
        node = ViewNode(viewer, ViewSettings(log_period=0.0, lazy=False), context=rclpy_context)
        source = Node('bad_cloud_source', context=rclpy_context)
        publisher = source.create_publisher(PointCloud2, 'points', 5)
        good = np.zeros((10, 3))
        clouds = [xyz_cloud(good[:, :2], fields=('x', 'y')),        # missing_field
                  xyz_cloud(good, width=11),                        # bad_size
                  xyz_cloud(good, is_bigendian=True),               # big_endian
                  xyz_cloud(good)]                                  # fine: nobody watches
        with spinning(rclpy_context, node, source):
            assert wait_for_subscribers(publisher, timeout=TIMEOUT)
            for count, msg in enumerate(clouds, start=1):
                # one at a time (the view keeps only the newest: depth 1), again when a
                # best-effort delivery was lost while discovery completes
                for _ in range(10):
                    publisher.publish(msg)
                    if wait_until(lambda: node.statistics.received >= count, 2.0):
                        break
                assert node.statistics.received == count
            snapshot = node.statistics.snapshot()
    finally:
        viewer.stop()
    assert snapshot['dropped_by_reason'] == {'missing_field': 1, 'bad_size': 1,
                                             'big_endian': 1}
    assert snapshot['skipped'] == 1 and snapshot['events'] == {'no_browser': 1}
    assert viewer.clouds_shown == 0


@pytest.mark.ros
@pytest.mark.slow
@needs_browser
def test_a_browser_shows_the_live_cloud_of_a_real_frame(tmp_path, rclpy_context, real_cloud):
    """The command in a process of its own, a real 7-Scenes cloud and its BEV published over
    DDS, and chromium: the page loads, then draws the points and shows the BEV image."""
    view = subprocess.Popen([sys.executable, '-m', 'pointcloud_pipeline', 'view', '--port', '0',
                             '--max-points', '50000'], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    output = OutputLines(view)
    try:
        line = output.wait_for('view: http', TIMEOUT)
        assert line, output.text()
        url = line.split()[1]
        assert re.fullmatch(r'http://127\.0\.0\.1:\d+', url) and 'warning' not in output.text()
        source = Node('real_frame_source', context=rclpy_context)
        points = source.create_publisher(PointCloud2, 'points', 5)
        bev = source.create_publisher(Image, 'bev/image', 5)
        header = Header(frame_id='camera_optical_frame')
        cloud_msg = cloud_to_pointcloud2(real_cloud, header)
        body = np.ascontiguousarray(real_cloud.xyz().reshape(-1, 3))
        grid = BevGrid(x_range=(0.0, 5.0), y_range=(-2.5, 2.5), z_range=(-2.0, 2.0),
                       resolution=0.02)
        bev_msg = pixels_to_image(bev_image(body, grid, transform=OPTICAL_TO_BODY), 'bgr8',
                                  header)
        # nobody watches yet: the view does not subscribe (no DDS delivery to it)
        assert not wait_until(lambda: points.get_subscription_count(), 3.0)
        with spinning(rclpy_context, source):
            with browser_page(tmp_path / 'chromium') as page:
                page.goto(url)
                page.get_by_text('waiting for the first cloud').wait_for(timeout=TIMEOUT * 1e3)
                hide_software_rendering_notice(page)
                page.wait_for_timeout(500)
                empty = screenshot(page, tmp_path / 'empty.png')
                assert wait_for_subscribers(points, timeout=TIMEOUT)
                status = page.get_by_text(re.compile('points, coloured by'))
                bev_shown = page.locator('img')
                for _ in range(int(TIMEOUT / 0.5)):  # best effort: publish until both show
                    points.publish(cloud_msg)
                    bev.publish(bev_msg)
                    if status.count() and bev_shown.count():
                        break
                    page.wait_for_timeout(500)
                status.wait_for(timeout=TIMEOUT * 1e3)
                assert status.inner_text().startswith(f'50,000 of {real_cloud.valid_points:,} '
                                                      f'points, coloured by rgb')
                bev_shown.first.wait_for(timeout=TIMEOUT * 1e3)
                page.wait_for_timeout(1500)  # a few frames of software WebGL
                drawn = screenshot(page, tmp_path / 'drawn.png')
                console = '\n'.join(page.console_lines)
            # the browser has gone: the view unsubscribes
            assert wait_until(lambda: points.get_subscription_count() == 0, TIMEOUT)
        assert 'WebGL support: true' in console, console
        white = np.full_like(empty, 255)  # the page's background
        assert drawn_pixels(white, empty) < 0.01 * region_pixels()  # nothing drawn before
        changed = drawn_pixels(empty, drawn)
        assert changed > 0.2 * region_pixels(), (changed, region_pixels(), tmp_path)
    finally:
        view.terminate()
        view.wait(timeout=TIMEOUT)
    assert 'Traceback' not in output.text(), output.text()
