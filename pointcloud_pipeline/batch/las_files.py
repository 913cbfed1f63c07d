"""What the LAS/LAZ file tools share: opening an input, a phase progress bar, the stop check.

laspy is imported on first use, so that the commands' help and the runner's tests need no LiDAR
stack.
"""
import sys

from pointcloud_pipeline.batch import runner

LAS_SUFFIXES = ('.las', '.laz')  # COPC files end in .copc.laz


def laspy():
    import laspy  # here: see the module docstring
    return laspy


class opened:
    """``laspy.open`` of an input as a context manager; ``error`` (an InputError subclass) for a
    file laspy cannot read as LAS/LAZ."""

    def __init__(self, path, backend, error):
        self.path, self.backend, self.error = path, backend, error
        self.reader = None

    def __enter__(self):
        try:
            self.reader = laspy().open(self.path, laz_backend=self.backend)
        except OSError:
            raise
        except Exception as error:
            raise self.error(f'not a readable LAS/LAZ file ({runner.failure_reason(error)})') \
                from None
        return self.reader

    def __exit__(self, *exc_info):
        self.reader.close()


def laz_backend(workers):
    """laz-rs's parallel backend when there is more than one worker, else its serial one."""
    backend = laspy().LazBackend
    return backend.LazrsParallel if workers > 1 else backend.Lazrs


class PhaseProgress:
    """A tqdm bar of one file counting ``unit`` through named phases (``COMMAND: phase``)."""

    def __init__(self, command, total, show, first_phase, unit='pt'):
        self.command, self.total, self.show = command, total, show
        self.first_phase, self.unit = first_phase, unit
        self.bar = None

    def __enter__(self):
        from tqdm import tqdm
        self.bar = tqdm(total=self.total, unit=self.unit, unit_scale=True,
                        desc=f'{self.command}: {self.first_phase}', file=sys.stderr,
                        leave=False, position=1, dynamic_ncols=True,
                        disable=None if self.show else True)
        return self

    def phase(self, name, total=None):
        self.bar.reset(total=self.total if total is None else total)
        self.bar.set_description(f'{self.command}: {name}')

    def update(self, count):
        self.bar.update(count)

    def __exit__(self, *exc_info):
        self.bar.close()


def stop_check(should_stop):
    """A function that raises InterruptedError once ``should_stop()``."""
    def check():
        if should_stop():
            raise InterruptedError('interrupted')
    return check
