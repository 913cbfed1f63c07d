"""A tiny tool for the runner's tests, at module level so that process and Dask workers can
unpickle it (the runner gives its process workers the main process's sys.path).

``TextTool`` copies a .txt input to <stem>.out with a prefix, unless the input's first line is
one of the commands below, which make it misbehave the way real tools can.
"""
import argparse
from dataclasses import dataclass
import os
from pathlib import Path
import sys
import time
from typing import ClassVar

import cv2
import numpy as np

from pointcloud_pipeline.batch import runner

REPO_ROOT = Path(__file__).resolve().parents[2]


class TextError(runner.InputError):
    """The tool's own input error (its message is the reason as is)."""


def _raise(error):
    raise error


COMMANDS = {  # first line of an input -> what processing it does after half the output
    'memory-error': lambda: _raise(MemoryError()),
    'cv2-error': lambda: cv2.imencode('.png', np.zeros((0, 0), np.uint8)),  # a real cv2.error
    'input-error': lambda: _raise(TextError('line 1 is not a number')),
    'exit-worker': lambda: os._exit(3),  # a process worker dying (never with threads)
}


@dataclass(frozen=True)
class TextTool:
    """input.txt -> <stem>.out = prefix + input; ``delay_s`` per file (interrupt tests)."""

    prefix: str = ''
    delay_s: float = 0.0
    name: ClassVar[str] = 'text'
    input_suffixes: ClassVar[tuple[str, ...]] = ('.txt',)
    format_version: ClassVar[int] = 1

    def output_name(self, input_path):
        return Path(input_path).stem + '.out'

    def settings(self):
        return {'prefix': self.prefix}  # delay_s does not change the output bytes

    def process(self, input_path, output_path):
        data = Path(input_path).read_bytes()
        with open(output_path, 'wb') as file:
            file.write(self.prefix.encode() + data[:len(data) // 2])  # half now: a partial file
            time.sleep(self.delay_s)
            command = data.split(b'\n', 1)[0].decode(errors='replace').strip()
            if command in COMMANDS:
                COMMANDS[command]()
            file.write(data[len(data) // 2:])


@dataclass(frozen=True)
class NeedyTool(TextTool):
    """A TextTool that needs a package nobody has (the runner refuses to start it)."""

    requires: ClassVar[dict] = {'no_such_package_here': 'pip install no-such-package-here'}


def tool_from_args(args):
    if args.prefix == 'invalid':
        raise ValueError('--prefix invalid is not allowed')
    if args.prefix == 'needy':
        return NeedyTool(args.prefix, args.delay)
    return TextTool(args.prefix, args.delay)


def build_parser():
    parser = argparse.ArgumentParser(prog='text')
    runner.add_runner_arguments(parser, inputs_help='.txt files', output_help='output dir')
    parser.add_argument('--prefix', default='')
    parser.add_argument('--delay', type=float, default=0.0, help='seconds per file')
    return parser


def main(argv=None):
    parser = build_parser()
    return runner.checked_run(parser, parser.parse_intermixed_args(argv), tool_from_args)


def command_line(*args):
    """argv and environment that run :func:`main` in a subprocess."""
    paths = [str(REPO_ROOT), str(Path(__file__).parent)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    code = 'import sys, runner_tools; sys.exit(runner_tools.main(sys.argv[1:]))'
    return [sys.executable, '-c', code, *map(str, args)], env
