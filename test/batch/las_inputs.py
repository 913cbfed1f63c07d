"""What the tests of the LAS/LAZ file commands share: the real sample files, running a command
(in a subprocess or in this process), inputs damaged the usual ways, a large file made from a
real one, and an output directory nobody may write."""
import contextlib
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT


def real_file(shared_data, *parts):
    """../shared/data/las/<parts>, or skip the test when the shared data lacks it."""
    path = shared_data.joinpath('las', *parts)
    if not path.is_file():
        pytest.skip(f'{path} is not in the shared data')
    return path


def run_command(command, *args, timeout=300, **kwargs):
    """``python -m pointcloud_pipeline COMMAND ...`` in a subprocess."""
    return subprocess.run([sys.executable, '-m', 'pointcloud_pipeline', command,
                           *map(str, args)], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def run_in_process(module, capsys, *args):
    """A command's ``main`` in this process, without progress bar: (exit code, stdout,
    stderr)."""
    code = module.main([*map(str, args), '--no-progress'])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write_damaged_inputs(directory, las_bytes, laz_bytes, truncated_laz='truncated.laz'):
    """Inputs broken the usual ways: not_las.las (text), truncated.las (cut in its points),
    ``truncated_laz`` (a LAZ cut in half) and corrupt.laz (40 bytes of its chunks flipped)."""
    (directory / 'not_las.las').write_bytes(b'this is not a LAS file\n' * 20)
    (directory / 'truncated.las').write_bytes(las_bytes[:len(las_bytes) // 2 + 7])
    (directory / truncated_laz).write_bytes(laz_bytes[:len(laz_bytes) // 2])
    corrupt = bytearray(laz_bytes)
    for position in np.random.default_rng(5).integers(3000, len(laz_bytes), 40):
        corrupt[position] ^= 0xFF
    (directory / 'corrupt.laz').write_bytes(bytes(corrupt))


def replicated_las(laspy, source_path, copies, path):
    """``copies`` copies of a real LAS/LAZ file side by side along X, written as LAS."""
    source = laspy.read(source_path)
    width = int(source.X.max() - source.X.min()) + 100
    las = laspy.LasData(source.header)
    las.points = laspy.ScaleAwarePointRecord.zeros(copies * len(source.points),
                                                   header=source.header)
    for copy in range(copies):
        block = slice(copy * len(source.points), (copy + 1) * len(source.points))
        las.points.array[block] = source.points.array
        las.points.array['X'][block] += copy * width
    las.write(path)
    return path


@contextlib.contextmanager
def read_only_directory(path):
    """``path`` made a directory nobody may write to while in the ``with`` (chattr +i for root,
    who writes anywhere; skips the test when that is not possible)."""
    path.mkdir()
    if os.geteuid() == 0:
        made = subprocess.run(['chattr', '+i', str(path)], capture_output=True)
        if made.returncode != 0:
            pytest.skip(f'cannot make a read-only directory as root: {made.stderr!r}')
    else:
        path.chmod(0o555)
    try:
        yield path
    finally:
        if os.geteuid() == 0:
            subprocess.run(['chattr', '-i', str(path)], check=True)
        path.chmod(0o755)
