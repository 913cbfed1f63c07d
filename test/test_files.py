"""Atomic outputs and the package's config files."""
import os
from pathlib import Path
import stat

import pytest

from conftest import REPO_ROOT
from pointcloud_pipeline.files import (SOURCE_CONFIG_DIR, atomic_output, config_dirs, config_file,
                                       write_atomically)


def test_write_atomically_replaces_the_file_with_open_permissions(tmp_path):
    target = tmp_path / 'out.bin'
    target.write_bytes(b'old')
    assert write_atomically(target, b'new contents') == target
    assert target.read_bytes() == b'new contents'
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ['out.bin']


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / 'out.json'
    target.write_text('old')
    with pytest.raises(OSError, match='disk full'):
        with atomic_output(target) as temporary:
            Path(temporary).write_text('half')
            raise OSError('disk full')
    assert target.read_text() == 'old'
    assert [p.name for p in tmp_path.iterdir()] == ['out.json']


def test_the_temporary_is_hidden_beside_the_target_until_renamed(tmp_path):
    target = tmp_path / 'cloud.ply'
    with atomic_output(target) as temporary:
        assert Path(temporary).parent == tmp_path
        assert Path(temporary).name.startswith('.cloud.ply.')
        assert Path(temporary).name.endswith('.partial')
        Path(temporary).write_bytes(b'x')
        assert not target.exists()
    assert target.read_bytes() == b'x'


def test_parents_are_made_only_when_asked(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_atomically(tmp_path / 'a' / 'b.txt', b'x')
    write_atomically(tmp_path / 'a' / 'b.txt', b'x', make_parents=True)
    assert (tmp_path / 'a' / 'b.txt').read_bytes() == b'x'


def test_config_files_are_found_in_the_checkout_or_the_installed_share():
    """From a checkout the checkout's config/ comes first; installed (colcon test imports the
    installed package), the share/pointcloud_pipeline/config copy is found."""
    found = config_file('pipeline.yaml')
    assert found.read_bytes() == (REPO_ROOT / 'config' / 'pipeline.yaml').read_bytes()
    if SOURCE_CONFIG_DIR is not None:
        assert SOURCE_CONFIG_DIR == REPO_ROOT / 'config'
        assert config_dirs()[0] == SOURCE_CONFIG_DIR
        assert found == SOURCE_CONFIG_DIR / 'pipeline.yaml'
    else:
        assert found.parts[-4:] == ('share', 'pointcloud_pipeline', 'config', 'pipeline.yaml')
    assert any(d.name == 'models' for d in config_dirs('models'))
    with pytest.raises(FileNotFoundError, match='config/no_such_file.yaml not found'):
        config_file('no_such_file.yaml')
