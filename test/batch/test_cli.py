"""``python -m pointcloud_pipeline COMMAND``: the command table, help, version, usage errors and
the bev command through it (in this process; test_bev_tool.py runs it in subprocesses)."""
import importlib
import shutil

import pytest

from pointcloud_pipeline import __version__
from pointcloud_pipeline.batch import cli

RUNNER_OPTIONS = ('--output-dir', '--overwrite', '--workers', '--executor', '--batch-size',
                  '--dask-scheduler', '--no-progress')


def exit_code(argv):
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    return exited.value.code


def test_help_and_version(capsys):
    assert exit_code(['--help']) == 0
    out = capsys.readouterr().out
    for name, (_, summary) in cli.COMMANDS.items():
        assert name in out and summary in out
    assert exit_code(['--version']) == 0
    assert capsys.readouterr().out.strip() == f'pointcloud_pipeline {__version__}'


@pytest.mark.parametrize('argv,message', [
    ([], 'the following arguments are required: COMMAND'),
    (['nope'], "invalid choice: 'nope'"),
    (['bev'], 'the following arguments are required: -o/--output-dir'),
])
def test_usage_errors_exit_2(capsys, argv, message):
    assert exit_code(argv) == 2
    assert message in capsys.readouterr().err


BATCH_COMMANDS = sorted(name for name in cli.COMMANDS if name != 'view')  # view: test/view


@pytest.mark.parametrize('name', BATCH_COMMANDS)
def test_every_command_module_has_the_interface_and_the_runner_options(name, capsys):
    module = importlib.import_module(cli.COMMANDS[name][0])
    assert callable(module.add_arguments) and callable(module.checked_run)
    assert exit_code([name, '--help']) == 0
    out = capsys.readouterr().out
    assert out.startswith(f'usage: pointcloud_pipeline {name} ')
    for option in RUNNER_OPTIONS:
        assert option in out


def test_bev_command_takes_inputs_before_and_after_options(shared_data, tmp_path, capsys):
    scans = shared_data / 'kitti' / 'velodyne'
    local = tmp_path / 'scans'
    local.mkdir()
    shutil.copy(scans / '000001.bin', local / '000001.bin')
    out_dir = tmp_path / 'out'
    code = cli.main(['bev', str(scans / '000000.bin'), '-o', str(out_dir), '--workers', '1',
                     str(local / '*.bin'), '--no-progress'])
    assert code == 0
    assert capsys.readouterr().out.startswith('bev: 2 files: 2 written, 0 skipped (up to date)')
    assert sorted(p.name for p in out_dir.glob('*.png')) == ['000000.png', '000001.png']
