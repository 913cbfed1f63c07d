"""Build and test the package the way a ROS 2 user does: colcon build + colcon test in a workspace.

Without a ROS install, colcon-core + colcon-ros + ament_package from PyPI (in the venv) reproduce
the ament_python build. The package's files are copied (git-tracked files only, no in-tree build
outputs) into <workspace>/src/pointcloud_pipeline.

Usage: python test/colcon_workspace.py [--workspace DIR] [--pytest-args ARGS...]
Exit status: colcon's (non-zero when the build or any test fails).
"""
import argparse
import os
from pathlib import Path
import shutil
import subprocess
import sys
import tempfile

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = 'pointcloud_pipeline'


def source_files(repo_root):
    """Files to copy: git-tracked and untracked-but-not-ignored files; plain walk outside git."""
    try:
        listed = subprocess.run(
            ['git', 'ls-files', '--cached', '--others', '--exclude-standard', '-z'],
            cwd=repo_root, check=True, capture_output=True).stdout.decode().split('\0')
        return [f for f in listed if f and (repo_root / f).is_file()]
    except (OSError, subprocess.CalledProcessError):
        ignored = {'.venv', 'build', 'install', 'log', 'out', '.git', '__pycache__'}
        return [str(p.relative_to(repo_root)) for p in repo_root.rglob('*')
                if p.is_file() and not ignored & set(p.relative_to(repo_root).parts)
                and p.suffix not in {'.so', '.c'}]


def make_workspace(workspace):
    src = workspace / 'src' / PACKAGE
    if src.exists():
        shutil.rmtree(src)
    for rel in source_files(REPO_ROOT):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, src / rel)
    return src


def colcon_env(workspace):
    """Environment for colcon: the venv's bin first, the shared data located for the tests."""
    env = dict(os.environ)
    env['PATH'] = os.path.dirname(sys.executable) + os.pathsep + env.get('PATH', '')
    env['PYTHONSAFEPATH'] = '1'  # pytest must import the installed package, not the source copy
    data = env.get('POINTCLOUD_PIPELINE_DATA') or str(REPO_ROOT.parent / 'shared' / 'data')
    env['POINTCLOUD_PIPELINE_DATA'] = data
    env['COLCON_HOME'] = str(workspace / '.colcon')  # ignore the user's colcon defaults
    return env


def run(cmd, workspace, env):
    print('+', ' '.join(cmd), flush=True)
    return subprocess.run(cmd, cwd=workspace, env=env).returncode


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--workspace', type=Path, help='workspace dir (default: a temporary one)')
    parser.add_argument('--pytest-args', nargs=argparse.REMAINDER, default=[],
                        help='passed to pytest by colcon test (default: the whole suite)')
    args = parser.parse_args(argv)
    workspace = args.workspace or Path(tempfile.mkdtemp(prefix='colcon_ws_'))
    workspace.mkdir(parents=True, exist_ok=True)
    make_workspace(workspace)
    env = colcon_env(workspace)
    colcon = [sys.executable, '-m', 'colcon']
    code = run(colcon + ['build', '--event-handlers', 'console_direct+'], workspace, env)
    if code:
        return code
    test = colcon + ['test', '--return-code-on-test-failure',
                     '--event-handlers', 'console_direct+']
    if args.pytest_args:
        test += ['--pytest-args'] + args.pytest_args
    return run(test, workspace, env)


if __name__ == '__main__':
    sys.exit(main())
