"""A real headless browser for the tests of the browser view: Debian's chromium driven by
playwright, and the measure of what a screenshot shows.

chromium renders WebGL in software here (SwiftShader, chosen by itself with --disable-gpu).
The background-networking flags keep it from connecting anywhere (connections beyond loopback
are refused on these machines); a fresh user-data directory per page.
"""
import contextlib
import importlib.util
import os
from pathlib import Path
import queue
import threading
import time

import cv2
import numpy as np
import pytest

CHROMIUM = Path(os.environ.get('POINTCLOUD_PIPELINE_CHROMIUM', '/usr/bin/chromium'))
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
                 '--no-first-run', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync']
VIEWPORT = {'width': 1000, 'height': 700}
SCENE_REGION = (slice(175, 600), slice(150, 640))  # rows, columns: the middle of the 3D scene,
# clear of the side panel (right, from x ~ 665), the notification (top left) and the axes
# gizmo (bottom left)
CHANGED = 40  # a pixel counts as drawn when a channel differs from the empty page by more


def browser_skip_reason():
    """Why the browser tests cannot run here (None when they can)."""
    if importlib.util.find_spec('playwright') is None:
        return ('playwright is not installed: pip install playwright==1.65.2 (the browser '
                'view tests drive chromium with it)')
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        return (f'chromium not found at {CHROMIUM}: apt-get install -y chromium (Debian; `make '
                f'setup` installs it as root), or set POINTCLOUD_PIPELINE_CHROMIUM')
    return None


needs_browser = pytest.mark.skipif(browser_skip_reason() is not None,
                                   reason=browser_skip_reason() or '')
needs_viser = pytest.mark.skipif(importlib.util.find_spec('viser') is None,
                                 reason='viser is not installed: pip install viser==1.1.1 (the '
                                        'browser view)')


@contextlib.contextmanager
def browser_page(user_data_dir):
    """A playwright page of a headless chromium with a fresh ``user_data_dir``; the browser's
    console lines are kept in ``page.console_lines``."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(user_data_dir), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
            headless=True, viewport=VIEWPORT)
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.console_lines = []
            page.on('console', lambda message: page.console_lines.append(
                f'{message.type}: {message.text}'))
            yield page
        finally:
            context.close()


def hide_software_rendering_notice(page):
    """Hide viser's "Software WebGL rendering detected" notice (expected here: SwiftShader; it
    may come at any time) so that screenshots show the scene."""
    page.add_style_tag(content='#webgl-software-rendering { display: none !important; }')


def screenshot(page, path):
    """Save a PNG of the page to ``path``; returns it as a BGR array."""
    page.screenshot(path=str(path))
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f'no screenshot at {path}'
    return image


def drawn_pixels(empty, drawn):
    """Pixels of the scene's middle (:data:`SCENE_REGION`) that differ between a screenshot
    before any cloud (``empty``) and one after (``drawn``)."""
    before = empty[SCENE_REGION].astype(np.int16)
    after = drawn[SCENE_REGION].astype(np.int16)
    return int(np.count_nonzero(np.abs(after - before).max(axis=2) > CHANGED))


def region_pixels():
    rows, columns = SCENE_REGION
    return (rows.stop - rows.start) * (columns.stop - columns.start)


class OutputLines:
    """The stdout lines of a ``subprocess.Popen(..., stdout=PIPE, text=True)``, read by a
    thread so that a test can wait for one with a timeout."""

    def __init__(self, process):
        self.lines = []
        self._queue = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream):
        for line in stream:
            self._queue.put(line.rstrip('\n'))
        self._queue.put(None)

    def wait_for(self, prefix, timeout):
        """The first line starting with ``prefix`` (None when the output ends or ``timeout``
        seconds pass first)."""
        found = next((line for line in self.lines if line.startswith(prefix)), None)
        deadline = time.monotonic() + timeout
        while found is None:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return None
            if line is None:
                self._queue.put(None)
                return None
            self.lines.append(line)
            if line.startswith(prefix):
                found = line
        return found

    def text(self):
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is None:
                self._queue.put(None)
                break
            self.lines.append(line)
        return '\n'.join(self.lines)
