"""Files: outputs that are complete or absent, and the package's own config files.

Outputs (:func:`atomic_output`, :func:`write_atomically`) are written to a temporary name beside
the target, flushed to disk, then renamed over it. Readers see the old file or the complete new
one, never a partial one, also when the writer is interrupted or killed: what an interruption
leaves is a hidden ``.NAME.HOST.PID-START.XXXXXXXX.partial`` temporary in the target's directory
(removed on any Python-level failure; after ``kill -9`` it stays behind, hidden, and is never
taken for an output, until :func:`remove_stale_partials` removes it: its name says which process
of which host wrote it).
"""
import contextlib
import os
from pathlib import Path
import re
import socket
import tempfile

PARTIAL_SUFFIX = '.partial'
PACKAGE_NAME = 'pointcloud_pipeline'
_CHECKOUT = Path(__file__).resolve().parent.parent
# config/ of a source checkout (beside package.xml); installed, the package's parent is
# site-packages, where a config/ directory would be another package's
SOURCE_CONFIG_DIR = (_CHECKOUT / 'config' if (_CHECKOUT / 'package.xml').is_file() else None)


# Read once at import: os.umask can only be read by setting it, which is not thread-safe.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_output(path, make_parents=False):
    """Context manager yielding a temporary path in ``path``'s directory to write the output to.

    On a normal exit the temporary file is fsync'ed, given the permissions ``open()`` would give
    (``0o666 & ~umask``; mkstemp makes 0600 files) and renamed to ``path`` (``os.replace``); on
    an exception it is removed and ``path`` is left as it was. The directory must exist, unless
    ``make_parents`` (then it is created).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if make_parents:
        os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=directory, prefix=f'.{os.path.basename(path)}.{owner_label()}.',
        suffix=PARTIAL_SUFFIX)
    os.close(handle)
    try:
        yield temporary
        with open(temporary, 'rb+') as written:
            os.fsync(written.fileno())
        os.chmod(temporary, 0o666 & ~_UMASK)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def remove_stale_partials(directory):
    """Remove the hidden ``.NAME.*.partial`` temporaries in ``directory`` that a process of this
    host left when it was killed (its pid and start time in the name: the process is gone, or
    the pid is another process's now); returns their paths. Those of live processes, of other
    hosts and without an owner in their name are left alone."""
    owner = re.compile(re.escape(f'.{host_label()}.') + r'(\d+)-(\d+)\.')
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        if not (entry.name.startswith('.') and entry.name.endswith(PARTIAL_SUFFIX)):
            continue
        match = owner.search(entry.name)
        if match is None or process_alive(int(match[1]), int(match[2])):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry.path)
            removed.append(entry.path)
    return removed


def owner_label():
    """``HOST.PID-START`` of this process (START: its start time, 0 if unknown): with the pid, it
    tells a later run whether the writer of a temporary is still alive."""
    pid = os.getpid()
    start = process_start_time(pid)
    return f'{host_label()}.{pid}-{start if start is not None else 0}'


def host_label():
    return socket.gethostname().replace('.', '_') or 'localhost'


def process_start_time(pid):
    """Start time of process ``pid`` (clock ticks since boot, /proc), or None if unknown."""
    try:
        with open(f'/proc/{pid}/stat', 'rb') as stat:
            return int(stat.read().rpartition(b')')[2].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def process_alive(pid, start):
    """Whether process ``pid`` started at ``start`` (0: unknown) still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        pass
    current = process_start_time(pid)
    return current is None or start == 0 or current == start


def write_atomically(path, data, make_parents=False):
    """Write the bytes-like ``data`` to ``path`` through :func:`atomic_output`; returns ``path``."""
    with atomic_output(path, make_parents) as temporary, open(temporary, 'wb') as file:
        file.write(data)
    return path


def config_dirs(subdir=''):
    """The existing ``config/<subdir>`` directories, in search order: the source tree's (beside
    the package, when running from a checkout), then the installed
    ``share/pointcloud_pipeline/config/<subdir>`` (found through the ament index)."""
    dirs = [SOURCE_CONFIG_DIR / subdir] if SOURCE_CONFIG_DIR is not None else []
    try:
        from ament_index_python.packages import get_package_share_directory
        dirs.append(Path(get_package_share_directory(PACKAGE_NAME)) / 'config' / subdir)
    except Exception:  # ament_index_python absent, or the package not installed
        pass
    return [directory for directory in dirs if directory.is_dir()]


def config_file(name):
    """Path of the package's ``config/<name>`` (first of :func:`config_dirs`); FileNotFoundError
    saying where it was looked for."""
    for directory in config_dirs():
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f'config/{name} not found in the source checkout '
                            f'({SOURCE_CONFIG_DIR or "none"}) nor in the installed '
                            f'share/{PACKAGE_NAME}')
