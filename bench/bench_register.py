"""Depth registration: the Cython kernel (1 thread, all threads) against the numpy reference
(``reference_register`` in test/test_register.py) and the memcpy floor of the output bytes.

Timed through the public ``register_depth`` (argument checks included) writing into a
preallocated ``out``. Frame: the synthetic room seen by the unregistered rig
(``demo.synthetic.UnregisteredCamera``): 640x480 uint16 mm depth registered into a 640x480
colour camera 25 mm to the right, slightly turned, with another focal length.
"""
import numpy as np

from pointcloud_pipeline import _register
from pointcloud_pipeline.demo.synthetic import UnregisteredCamera, depth_to_color_transform
from pointcloud_pipeline.register import register_depth
from test_register import reference_register
from timing import median_seconds, memcpy_floor_seconds, ms, print_table

SIZE = (640, 480)


def main(quick=False):
    repeat = 5 if quick else 25
    all_threads = _register.max_threads()
    rig = UnregisteredCamera(*SIZE, color_size=SIZE)
    depth = rig.render(5.0)[0].depth_mm
    transform = depth_to_color_transform()
    args = (rig.depth_intrinsics, rig.color_intrinsics, SIZE, transform)
    rows = []
    for label, image in (('uint16 mm', depth),
                         ('float32 m', np.where(depth > 0, depth * 0.001, np.nan)
                          .astype(np.float32))):
        for fill in (False, True):
            out = np.empty(SIZE[::-1], image.dtype)
            one = median_seconds(lambda: register_depth(
                image, *args, fill_upsampling_holes=fill, out=out, threads=1), repeat=repeat)
            every = median_seconds(lambda: register_depth(
                image, *args, fill_upsampling_holes=fill, out=out, threads=0), repeat=repeat)
            numpy_ref = median_seconds(lambda: reference_register(
                image, *args, fill_upsampling_holes=fill), repeat=max(repeat // 5, 3), warmup=1)
            floor = memcpy_floor_seconds(out.nbytes, repeat=repeat)
            rows.append([f'{label}{", fill holes" if fill else ""}', ms(one), ms(every),
                         ms(numpy_ref), ms(floor), f'{every / floor:.1f}',
                         f'{numpy_ref / every:.1f}', f'{one / every:.2f}'])
    print_table(f'register_depth, 640x480 depth -> 640x480 colour (synthetic room, '
                f'{np.mean(depth > 0):.0%} valid); {all_threads} threads = all; '
                f'ms = median of {repeat}',
                ['input', 'kernel_1', f'kernel_{all_threads}', 'numpy', 'memcpy',
                 'all/memcpy', 'numpy/all', '1/all'], rows)
