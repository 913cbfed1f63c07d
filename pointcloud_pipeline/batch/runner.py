"""The shared runner of the batch file tools: INPUT... -> one output file per input, in parallel.

A tool (e.g. :class:`pointcloud_pipeline.batch.bev.BevTool`) is a small picklable object that
turns one input file into one output file (see :class:`Tool`); the runner does the rest.

Inputs
    Files, directories (their files whose name ends in one of the tool's ``input_suffixes``,
    in any case) and glob patterns (``**`` recursive), expanded in order without duplicates
    (same resolved path). A missing path, a directory without such files or a pattern that
    matches nothing is a failure of that input, and so is an input whose output name was already
    taken by an earlier input.

Outputs
    ``OUTDIR/<tool.output_name(input)>``. The tool writes into the temporary path that
    :func:`pointcloud_pipeline.files.atomic_output` yields beside it (then fsync, os.replace):
    an output is complete or absent under its final name, whatever happens to the run. The
    hidden temporaries that a run killed with ``kill -9`` leaves are removed by the next run
    into OUTDIR (:func:`pointcloud_pipeline.files.remove_stale_partials`: those of dead
    processes of this host).

Resume
    ``OUTDIR/.<tool>.manifest.json`` records, per output: the input's resolved path, size and
    mtime_ns; the hash of the tool's settings (sha256 of the canonical JSON of the tool's
    name, its ``format_version`` and its ``settings()``: every option that changes the output
    bytes); the output's size and mtime_ns after writing. An output is skipped ("up to date")
    only when all of these match now: a rerun with other options, a touched or replaced input,
    and a changed or deleted output are redone, and so is an output without a record (made by
    an older version, or by a run killed between the rename and the record). ``--overwrite``
    redoes everything. The main process writes the manifest atomically while results arrive
    (at most once a second, less often when it is huge), at the end and on an interrupt; after
    ``kill -9`` the outputs of the last second or so are redone. Limits: an input replaced by
    one of the same size and mtime is taken as the same (as by make and rsync); two runs into
    the same OUTDIR at once may lose each other's records (those outputs are redone); copying
    OUTDIR without keeping mtimes makes every output redone.

Work
    Inputs are grouped into tasks of ``--batch-size`` files (default about four tasks per
    worker, at most 16 files) handed to ``--workers`` threads (default: the tool's kernels,
    file I/O and encoders release the GIL), processes (forkserver, preloading the tool's
    module) or the workers of an existing Dask cluster (``--dask-scheduler``; OUTDIR must be
    reachable from them).

    A tool that parallelises inside one file (``parallel_inside = True``: one file may be huge,
    e.g. normals over tiles) gets its files one after another in the main process, with the
    executor options as a :class:`Parallelism` (``--batch-size`` does not apply); it may use
    :func:`start_pool` for its own tasks, must stop the file at hand (raising any exception,
    its output is then discarded and counted as not done) once ``should_stop()``, and may return
    a dict of counters per file, which its ``summary_details(counters, seconds)`` turns into
    the end of the summary line.

Failures
    Any exception in one input is that input's failure, printed as ``error: INPUT: reason`` on
    stderr as it happens; the others go on. The reason is the tool's own message for its known
    input errors (:class:`InputError`), else ``TypeName: message``. A worker process that dies
    fails the inputs of the tasks in flight (their hidden temporaries are removed) and the run
    goes on with a fresh pool; a Dask task error (e.g. KilledWorker) fails that task's inputs.

Interrupts
    SIGINT (Ctrl-C) and SIGTERM stop the run: thread and process workers finish the file at
    hand and stop, queued tasks are cancelled, what finished is counted and recorded. A second
    signal interrupts the main thread at once (KeyboardInterrupt).

The end is one summary line on stdout, e.g. ``bev: 12 files: 9 written, 2 skipped (up to date),
1 failed in 0.84 s (10.7 written/s, 2 threads) -> OUT`` (``, N not done (interrupted)`` after an
interrupt), and the exit code: 0 all done, 1 some input failed, 2 usage error, 130 interrupted.
"""
import argparse
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
import contextlib
import glob
import hashlib
import importlib.util
import json
import math
import multiprocessing
import os
from pathlib import Path
import signal
import sys
import threading
import time
from typing import Callable, NamedTuple, Protocol

from pointcloud_pipeline.files import PARTIAL_SUFFIX, atomic_output, remove_stale_partials

EXECUTORS = ('threads', 'processes')
DEFAULT_EXECUTOR = 'threads'  # as fast as processes for bev (bench/bench_bev.py), starts faster
MAX_BATCH_SIZE = 16
TASKS_PER_WORKER = 4  # load balance: a slow task delays the end by at most about 1/4 of a share
MANIFEST_FORMAT = 1
MANIFEST_SAVE_INTERVAL_S = 1.0  # at least; and at least 20 times as long as the last save took
POLL_S = 0.05  # how often the main loop looks at the interrupt flag while waiting for results
EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130  # usage errors: 2, from argparse

_process_worker_stop = None  # set in each process worker by _start_process_worker


class InputError(ValueError):
    """An input the tool cannot turn into an output; the message says why (printed as is)."""


class Tool(Protocol):
    """What the runner needs from a tool: a small picklable object (a frozen dataclass)."""

    name: str  # the command name: summary line, progress bar, manifest name
    input_suffixes: tuple[str, ...]  # lower-case name endings a directory contributes
    format_version: int  # bump when the same settings give other output bytes

    def output_name(self, input_path: str) -> str:
        """File name of the output of ``input_path`` (in the output directory)."""

    def settings(self) -> dict:
        """JSON-able dict of every option that changes the output bytes."""

    def process(self, input_path: str, output_path: str) -> None:
        """Write the output of ``input_path`` to ``output_path`` (a temporary path); raise an
        :class:`InputError` subclass for a bad input. (A tool with ``parallel_inside = True``
        gets a third argument, the :class:`Parallelism`, and may return a dict of counters.)"""


class Parallelism(NamedTuple):
    """What a ``parallel_inside`` tool gets for running the tasks of one file: the executor
    options (``--executor``, ``--workers``, ``--dask-scheduler``), ``should_stop()`` (true once
    the run is interrupted: stop the file at hand) and whether to show a progress bar."""

    executor: str
    workers: int
    dask_scheduler: str | None
    should_stop: Callable[[], bool]
    show_progress: bool


class Outcome(NamedTuple):
    """What a worker reports for one input: ``error`` (the reason) or the written output's
    ``(size bytes, mtime_ns)``; ``counters``: what a parallel_inside tool returned."""

    input_path: str
    error: str | None
    output_stat: tuple[int, int] | None
    counters: dict | None = None


# --- worker side ----------------------------------------------------------------------------

def failure_reason(error):
    """One-line reason of a failed input: an InputError's message, else ``TypeName: message``
    with the package of a non-builtin type (``cv2.error``, ``distributed.KilledWorker``) and an
    OSError's strerror (without the file name, which may be the temporary one)."""
    if isinstance(error, InputError):
        return str(error)
    kind = type(error)
    name = (kind.__qualname__ if kind.__module__ == 'builtins'
            else f'{kind.__module__.partition(".")[0]}.{kind.__qualname__}')
    message = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    message = ' '.join(message.split())  # one line: e.g. a cv2.error's message spans lines
    return f'{name}: {message}' if message else name


def run_job(tool, input_path, output_path, parallelism=None):
    """Make one output through a temporary file; returns its :class:`Outcome`. ``parallelism``:
    for a parallel_inside tool (passed on to its ``process``)."""
    counters = None
    try:
        with atomic_output(output_path) as temporary:
            if parallelism is None:
                tool.process(input_path, temporary)
            else:
                counters = tool.process(input_path, temporary, parallelism)
        written = os.stat(output_path)
    except Exception as error:  # any error is this input's failure, never the run's end
        return Outcome(input_path, failure_reason(error), None)
    return Outcome(input_path, None, (written.st_size, written.st_mtime_ns), counters)


def run_task(tool, jobs, stop=None):
    """Run the (input path, output path) ``jobs`` of one task in order; returns their outcomes.

    Stops early, leaving the rest out, once ``stop`` (an Event; in a process worker the pool's
    own) is set: the run is being interrupted.
    """
    stop = stop if stop is not None else _process_worker_stop
    outcomes = []
    for input_path, output_path in jobs:
        if stop is not None and stop.is_set():
            break
        outcomes.append(run_job(tool, input_path, output_path))
    return outcomes


def _start_process_worker(stop, sys_path):
    """Initializer of a process worker: the main process handles Ctrl-C (it reaches the whole
    process group), ``stop`` tells when to stop; the main process's sys.path, which forkserver
    does not pass on (Python 3.11), so that tools defined outside the package unpickle."""
    global _process_worker_stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.path[:] = sys_path
    _process_worker_stop = stop


# --- inputs ---------------------------------------------------------------------------------

def find_inputs(inputs, suffixes):
    """Expand files, directories (their files ending in one of ``suffixes``, any case) and glob
    patterns, in order, without duplicates. Returns (paths, problems), problems a list of
    (input, reason)."""
    paths, problems, seen = [], [], set()
    for entry in inputs:
        path = Path(entry)
        if path.is_dir():
            with os.scandir(path) as entries:
                found = sorted(path / entry.name for entry in entries
                               if entry.name.lower().endswith(suffixes) and entry.is_file())
            if not found:
                problems.append((entry, f'directory holds no {" or ".join(suffixes)} files'))
        elif path.is_file():
            found = [path]
        elif glob.has_magic(entry):
            found = sorted(Path(p) for p in glob.glob(entry, recursive=True) if os.path.isfile(p))
            if not found:
                problems.append((entry, 'pattern matches no files'))
        else:
            found = []
            problems.append((entry, 'no such file or directory'))
        for found_path in found:
            key = found_path.resolve()
            if key not in seen:
                seen.add(key)
                paths.append(found_path)
    return paths, problems


def batches_of(items, size):
    return [items[i:i + size] for i in range(0, len(items), size)]


def default_batch_size(count, workers):
    """About TASKS_PER_WORKER tasks per worker, at most MAX_BATCH_SIZE files per task."""
    return max(1, min(MAX_BATCH_SIZE, math.ceil(count / (TASKS_PER_WORKER * workers))))


# --- resume ---------------------------------------------------------------------------------

def settings_digest(tool):
    """sha256 (hex) of the canonical JSON of the tool's name, format version and settings."""
    return hashlib.sha256(canonical_json(settings_record(tool)).encode()).hexdigest()


def settings_record(tool):
    return {'tool': tool.name, 'format_version': tool.format_version,
            'settings': tool.settings()}


def canonical_json(value):
    return json.dumps(value, sort_keys=True, separators=(',', ':'), ensure_ascii=False,
                      allow_nan=False)


def input_identity(path):
    """{'path': resolved path, 'size': bytes, 'mtime_ns': ...} of an input file."""
    resolved = os.path.realpath(path)
    status = os.stat(resolved)
    return {'path': resolved, 'size': status.st_size, 'mtime_ns': status.st_mtime_ns}


class Manifest:
    """The records of one tool's outputs in one output directory (see the module docstring)."""

    def __init__(self, output_dir, tool):
        self.path = Path(output_dir) / f'.{tool.name}.manifest.json'
        self.tool_name = tool.name
        self.digest = settings_digest(tool)
        self.settings = {self.digest: settings_record(tool)}
        self.outputs = {}
        self.changed = False

    def load(self):
        """Read the existing records; returns a warning (str) when the file is unreadable
        (then every output is redone), else None."""
        try:
            with open(self.path, 'rb') as file:
                saved = json.load(file)
            if saved.get('manifest_format') != MANIFEST_FORMAT:
                return f'{self.path}: unknown manifest format, every output is redone'
            self.outputs = dict(saved['outputs'])
            self.settings = {**saved.get('settings', {}), **self.settings}
        except (FileNotFoundError, NotADirectoryError):  # first run into this directory
            pass
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
            return f'{self.path}: unreadable ({failure_reason(error)}), every output is redone'
        return None

    def is_up_to_date(self, output_name, identity):
        """Whether the output exists as recorded, made from this input with these settings."""
        record = self.outputs.get(output_name)
        if not isinstance(record, dict):
            return False
        if record.get('input') != identity or record.get('settings') != self.digest:
            return False
        try:
            status = os.stat(self.path.parent / output_name)
        except OSError:
            return False
        return record.get('output') == {'size': status.st_size, 'mtime_ns': status.st_mtime_ns}

    def record(self, output_name, identity, output_stat):
        size, mtime_ns = output_stat
        self.outputs[output_name] = {'input': identity, 'settings': self.digest,
                                     'output': {'size': size, 'mtime_ns': mtime_ns}}
        self.changed = True

    def save(self):
        """Write the records (atomically) when they changed since the last save."""
        if not self.changed:
            return
        used = {record.get('settings') for record in self.outputs.values()
                if isinstance(record, dict)}
        document = {'manifest_format': MANIFEST_FORMAT, 'tool': self.tool_name,
                    'settings': {digest: record for digest, record in self.settings.items()
                                 if digest in used},
                    'outputs': self.outputs}
        text = json.dumps(document, sort_keys=True, separators=(',', ':'))  # C encoder: fast
        with atomic_output(self.path) as temporary, open(temporary, 'w') as file:
            file.write(text)
        self.changed = False


# --- the main process's bookkeeping -----------------------------------------------------------

class _Tally:
    """Counts, error lines, progress and manifest records of one run, as results arrive."""

    def __init__(self, manifest, write):
        self.manifest = manifest
        self.write = write  # tqdm.write: prints above the progress bar
        self.progress = None  # the tqdm bar, once the jobs are known
        self.written = self.skipped = self.failed = self.processed = 0
        self.counters = []  # what a parallel_inside tool returned per written file
        self.planned = {}  # input path -> (output name, input identity)
        self.next_save = time.monotonic() + MANIFEST_SAVE_INTERVAL_S
        self.save_warned = False

    def fail(self, input_path, reason):
        self.failed += 1
        self.write(f'error: {input_path}: {reason}', file=sys.stderr)

    def outcomes(self, outcomes):
        for outcome in outcomes:
            if outcome.error is not None:
                self.fail(outcome.input_path, outcome.error)
            else:
                self.written += 1
                self.manifest.record(*self.planned[outcome.input_path], outcome.output_stat)
                if outcome.counters is not None:
                    self.counters.append(outcome.counters)
        self.processed += len(outcomes)
        self.progress.update(len(outcomes))
        if time.monotonic() >= self.next_save:
            self.save_manifest()

    def task_failed(self, task, reason):
        """A whole task failed (its worker died, ...): fail its inputs, and remove what a killed
        worker may have left of their outputs."""
        for input_path, output_path in task:
            self.fail(input_path, reason)
            _remove_partial_outputs(output_path)
        self.processed += len(task)
        self.progress.update(len(task))

    def future_done(self, task, future):
        """Account for a finished local future; returns True when its process pool broke."""
        error = future.exception()
        if error is None:
            self.outcomes(future.result())
        elif isinstance(error, BrokenProcessPool):
            self.task_failed(task, 'a worker process died while this task was in flight '
                                   '(BrokenProcessPool)')
            return True
        else:
            self.task_failed(task, failure_reason(error))
        return False

    def save_manifest(self):
        start = time.monotonic()
        try:
            self.manifest.save()
        except OSError as error:
            if not self.save_warned:
                self.save_warned = True
                self.write(f'warning: cannot record the outputs in {self.manifest.path} '
                           f'({failure_reason(error)}): they will be redone next time',
                           file=sys.stderr)
        # a huge manifest is saved less often: the main thread's share stays under 5 %
        now = time.monotonic()
        self.next_save = now + max(MANIFEST_SAVE_INTERVAL_S, 20 * (now - start))


def _remove_partial_outputs(output_path):
    """Remove the temporaries that a killed worker left for ``output_path`` (atomic_output's
    hidden ``.NAME.XXXXXXXX.partial`` files beside it)."""
    directory, name = os.path.split(output_path)
    pattern = os.path.join(glob.escape(directory), f'.{glob.escape(name)}.*{PARTIAL_SUFFIX}')
    for temporary in glob.glob(pattern):
        with contextlib.suppress(OSError):
            os.unlink(temporary)


class _Interruption:
    """SIGINT and SIGTERM set ``requested`` (in the main thread, while in the ``with``); the
    second signal raises KeyboardInterrupt. The handler only sets a flag: taking a lock in a
    signal handler can deadlock with the code it interrupts."""

    def __init__(self):
        self.requested = False
        self.previous = {}

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(signum) is not signal.SIG_IGN:  # e.g. nohup: keep ignoring
                    self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


# --- executors --------------------------------------------------------------------------------

def start_pool(kind, workers, tool):
    """(executor, stop event) of a fresh local pool of ``kind`` ('threads', 'processes'); process
    workers preload this module and the tool's, and ignore SIGINT (the main process handles
    it)."""
    if kind == 'processes':
        # forkserver: workers start from a clean process, not a fork of this (threaded) one
        context = multiprocessing.get_context('forkserver')
        context.set_forkserver_preload([__name__, type(tool).__module__])
        stop = context.Event()
        executor = ProcessPoolExecutor(workers, mp_context=context,
                                       initializer=_start_process_worker,
                                       initargs=(stop, list(sys.path)))
        return executor, stop
    return ThreadPoolExecutor(workers, thread_name_prefix=tool.name), threading.Event()


def _run_local(tool, tasks, kind, workers, tally, interruption):
    waiting = deque(tasks)
    while waiting and not interruption.requested:
        executor, stop = start_pool(kind, workers, tool)
        # A process pool gets only as many tasks as it has workers, so that the tasks that fail
        # when it breaks are the ones that were running; threads get one more task each, queued
        # so that none waits for the next. (Bounded: wait() costs a lock per future.)
        limit = workers if kind == 'processes' else 2 * workers
        in_flight = {}
        broken = False
        try:
            while (waiting or in_flight) and not broken and not interruption.requested:
                while waiting and len(in_flight) < limit:
                    task = waiting.popleft()
                    try:
                        future = executor.submit(run_task, tool, task,
                                                 stop if kind == 'threads' else None)
                    except BrokenProcessPool:
                        waiting.appendleft(task)
                        broken = True
                        break
                    in_flight[future] = task
                done, _ = wait(in_flight, timeout=POLL_S, return_when=FIRST_COMPLETED)
                for future in done:
                    broken |= tally.future_done(in_flight.pop(future), future)
        finally:
            stop.set()  # workers finish the file at hand; queued tasks are cancelled
            executor.shutdown(wait=True, cancel_futures=True)
            for future, task in in_flight.items():  # what finished meanwhile is counted
                if not future.cancelled():
                    tally.future_done(task, future)


def _run_in_main_process(tool, jobs, args, tally, interruption):
    """A parallel_inside tool: its files one after another here, each with the executor
    options; a file abandoned because of an interrupt is not done (neither written nor
    failed)."""
    parallelism = Parallelism(args.executor, args.workers, args.dask_scheduler,
                              lambda: interruption.requested, not args.no_progress)
    for input_path, output_path in jobs:
        if interruption.requested:
            break
        outcome = run_job(tool, input_path, output_path, parallelism)
        if outcome.error is not None and interruption.requested:
            break
        tally.outcomes([outcome])


def _run_dask(tool, tasks, address, tally, interruption):
    import asyncio  # here: 20 ms to import, and only Dask needs it

    from dask.distributed import Client, as_completed
    try:
        client = Client(address, set_as_default=False, timeout='30s')
    except Exception as error:
        for task in tasks:
            tally.task_failed(task, f'cannot connect to the Dask scheduler {address}: '
                                    f'{failure_reason(error)}')
        return
    with client:
        futures = client.map(run_task, [tool] * len(tasks), tasks, pure=False)
        task_of = {future.key: task for future, task in zip(futures, tasks)}
        # as_completed without results: with them, it fetches each result itself and loses the
        # future for good when that fails (the worker holding it died)
        finished = as_completed(futures, loop=client.loop)
        try:
            while not finished.is_empty() and not interruption.requested:
                ready = finished.next_batch(block=False)
                if not ready:
                    time.sleep(POLL_S)
                for future in ready:
                    try:
                        outcomes = future.result()
                    except (Exception, asyncio.CancelledError) as error:  # KilledWorker, ...
                        tally.task_failed(task_of[future.key], failure_reason(error))
                    else:
                        tally.outcomes(outcomes)
        finally:
            client.cancel(futures)


# --- command line -------------------------------------------------------------------------------

def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be >= 1, got {value}')
    return value


def finite_float(text):
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f'must be a finite number, got {text}')
    return value


def positive_float(text):
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f'must be a number > 0, got {text}')
    return value


def add_runner_arguments(parser, inputs_help, output_help):
    """The options every tool shares: INPUT..., -o/--output-dir, --overwrite, --workers,
    --executor, --batch-size, --dask-scheduler, --no-progress."""
    parser.add_argument('inputs', nargs='+', metavar='INPUT', help=inputs_help)
    parser.add_argument('-o', '--output-dir', required=True, type=Path, help=output_help)
    parser.add_argument('--overwrite', action='store_true',
                        help='redo every output (default: skip the outputs that are up to date:'
                             ' same input, same settings, unchanged since written)')
    parser.add_argument('--workers', type=positive_int, default=os.cpu_count() or 1,
                        help='parallel workers (default: all cores, %(default)s here)')
    parser.add_argument('--executor', choices=EXECUTORS, default=DEFAULT_EXECUTOR,
                        help='worker kind (default: %(default)s)')
    parser.add_argument('--batch-size', type=positive_int, default=None,
                        help=f'files per task (default: about {TASKS_PER_WORKER} tasks per '
                             f'worker, <= {MAX_BATCH_SIZE})')
    parser.add_argument('--dask-scheduler', metavar='ADDRESS', default=None,
                        help='run the tasks on this Dask cluster (e.g. tcp://127.0.0.1:8786); '
                             'OUTDIR must be reachable by its workers')
    parser.add_argument('--no-progress', action='store_true',
                        help='no progress bar (it is shown only on a terminal anyway)')


def checked_run(parser, args, make_tool):
    """Build the tool with ``make_tool(args)`` (ValueError: usage error, exit 2), check that
    the packages in the tool's ``requires`` ({module: how to install it}, optional) are
    installed (else a usage error saying how), then :func:`run` it; returns the exit code."""
    try:
        tool = make_tool(args)
    except ValueError as error:
        parser.error(str(error))
    for module, install in getattr(tool, 'requires', {}).items():
        if importlib.util.find_spec(module) is None:
            parser.error(f'{tool.name} needs the Python package {module}: {install}')
    if args.dask_scheduler and importlib.util.find_spec('distributed') is None:
        parser.error('--dask-scheduler needs dask.distributed: '
                     'pip install dask==2026.8.0 distributed==2026.8.0')
    return run(tool, args)


def run(tool, args):
    """Run ``tool`` over ``args.inputs`` into ``args.output_dir`` (see the module docstring);
    returns the exit code: 0 ok, 1 some input failed, 130 interrupted."""
    from tqdm import tqdm
    start = time.perf_counter()
    with _Interruption() as interruption:
        manifest = Manifest(args.output_dir, tool)
        warning = manifest.load()
        if warning:
            print(f'warning: {warning}', file=sys.stderr)
        remove_stale_partials(args.output_dir)  # what runs killed with kill -9 left
        tally = _Tally(manifest, tqdm.write)
        paths, problems = find_inputs(args.inputs, tool.input_suffixes)
        for entry, reason in problems:
            tally.fail(entry, reason)
        pending = _plan(tool, paths, args, manifest, tally)
        if pending:
            try:
                args.output_dir.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                for input_path, _ in pending:
                    tally.fail(input_path, f'cannot create {args.output_dir}: '
                                           f'{error.strerror or error}')
                pending = []
        tally.progress = tqdm(total=len(pending), unit='file', desc=tool.name, file=sys.stderr,
                              disable=True if args.no_progress else None,  # only on a terminal
                              dynamic_ncols=True)

        if pending:
            batch_size = args.batch_size or default_batch_size(len(pending), args.workers)
            tasks = batches_of(pending, batch_size)
            try:
                if getattr(tool, 'parallel_inside', False):
                    _run_in_main_process(tool, pending, args, tally, interruption)
                elif args.dask_scheduler:
                    _run_dask(tool, tasks, args.dask_scheduler, tally, interruption)
                else:
                    _run_local(tool, tasks, args.executor, args.workers, tally, interruption)
            except KeyboardInterrupt:  # a second signal
                interruption.requested = True
            finally:
                tally.save_manifest()
        tally.progress.close()
        interrupted = interruption.requested

    elapsed = time.perf_counter() - start
    not_done = len(pending) - tally.processed
    where = (f'dask {args.dask_scheduler}' if args.dask_scheduler
             else f'{args.workers} {args.executor}')
    print(f'{tool.name}: {len(paths) + len(problems)} files: {tally.written} written, '
          f'{tally.skipped} skipped (up to date), {tally.failed} failed'
          + (f', {not_done} not done (interrupted)' if interrupted else '')
          + f' in {elapsed:.2f} s ({tally.written / elapsed:.1f} written/s, {where})'
          + f' -> {args.output_dir}'
          + (f'; {tool.summary_details(tally.counters, elapsed)}'
             if hasattr(tool, 'summary_details') else ''), flush=True)
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if tally.failed else EXIT_OK


def _plan(tool, paths, args, manifest, tally):
    """The (input path, output path) jobs to do; fails name clashes, counts up-to-date ones."""
    pending, owners = [], {}
    for path in paths:
        try:
            output_name = tool.output_name(str(path))
        except Exception as error:
            tally.fail(path, failure_reason(error))
            continue
        if output_name in owners:
            tally.fail(path, f'same output name as {owners[output_name]} ({output_name})')
            continue
        owners[output_name] = path
        try:
            identity = input_identity(path)
        except OSError as error:  # gone since it was found
            tally.fail(path, failure_reason(error))
            continue
        if not args.overwrite and manifest.is_up_to_date(output_name, identity):
            tally.skipped += 1
        else:
            tally.planned[str(path)] = (output_name, identity)
            pending.append((str(path), str(args.output_dir / output_name)))
    return pending
