"""Decode ahead and detect several frames at once; hand them on in frame order.

Detection is nearly all of ``autotrack annotate``'s time on a CPU, and both OpenCV's decoder
and onnxruntime release the GIL. So a reader thread decodes the next frames while worker
threads run the detector on the ones before, and the caller (the tracker) takes them one by
one, in order. Every hand-over is bounded: at most ``depth`` chunks of frames are read and
not yet taken, so memory does not grow with the video. :func:`run_ahead` adds a stage of
per-frame work after detection (the camera-shift estimate) on a thread of its own, so that
it overlaps with detection and tracking instead of running on the tracker's thread.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from autotrack.detections import Detections

DetectMany = Callable[[Sequence[np.ndarray]], list[Detections]]
_POLL = 0.1  # seconds between checks for a stop while a hand-over is blocked


@dataclass(frozen=True)
class Detected:
    """One frame as the tracker receives it; ``detections`` None for a frame that is not
    detected (``--detect-every``), whose ``frame`` may be None too (not decoded)."""

    index: int
    frame: np.ndarray | None
    detections: Detections | None
    # the scene's shift (dx, dy) since the previous decoded frame, when a stage before the
    # tracker estimated it (:func:`run_ahead`); None: not estimated ahead
    camera_shift: np.ndarray | None = None


@dataclass
class BusyTimes:
    """Seconds each stage's threads were busy; they overlap, so they can add up to more than
    the wall time."""

    decode: float = 0.0
    detect: float = 0.0
    camera: float = 0.0  # the camera-shift estimate's thread (run_ahead), when it runs


_Chunk = list[tuple[int, np.ndarray | None]]
_DONE = object()
_In = TypeVar("_In")
_Out = TypeVar("_Out")


def detect_in_order(frames: Iterable[tuple[int, np.ndarray | None]], detect: DetectMany, *,
                    workers: int, chunk: int = 1, depth: int | None = None,
                    wanted: Callable[[int], bool] = lambda index: True,
                    times: BusyTimes | None = None) -> Iterator[Detected]:
    """Every frame of ``frames`` as :class:`Detected`, in order; the ``wanted`` ones (with a
    decoded frame) detected by ``detect`` in ``workers`` threads, ``chunk`` frames per call.

    ``depth`` (default 2 * workers) bounds the chunks in flight. Closing the iterator early
    stops the reader and the workers; an error in either is raised here, in order.
    """
    if workers < 1 or chunk < 1:
        raise ValueError(f"workers and chunk must be >= 1, got {workers}, {chunk}")
    times = times if times is not None else BusyTimes()
    pending: queue.Queue = queue.Queue(maxsize=depth or 2 * workers)
    stop = threading.Event()
    pool = ThreadPoolExecutor(workers, thread_name_prefix="autotrack-detect")

    def timed(images: list[np.ndarray]) -> tuple[list[Detections], float]:
        start = time.perf_counter()
        found = detect(images)
        return found, time.perf_counter() - start

    def submit(items: _Chunk) -> None:
        images = [frame for index, frame in items if frame is not None and wanted(index)]
        future = pool.submit(timed, images) if images else None
        _put(pending, (items, future), stop)

    def read() -> None:
        items: _Chunk = []
        try:
            source = iter(frames)
            while not stop.is_set():
                start = time.perf_counter()
                item = next(source, None)
                times.decode += time.perf_counter() - start  # this thread alone writes it
                if item is None:
                    break
                items.append(item)
                if len(items) == chunk:
                    submit(items)
                    items = []
            if items:
                submit(items)
            _put(pending, _DONE, stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, raised there
            _put(pending, exc, stop)

    reader = threading.Thread(target=read, name="autotrack-read", daemon=True)
    reader.start()
    try:
        for items, future in _taken(pending):
            yield from _in_order(items, future, wanted, times)
    finally:
        stop.set()
        _drain(pending)
        reader.join()
        _drain(pending)  # what the reader put while it was stopping
        pool.shutdown(wait=True, cancel_futures=True)


def run_ahead(items: Iterable[_In], work: Callable[[_In], _Out], *, depth: int = 8,
              name: str = "autotrack-ahead") -> Iterator[_Out]:
    """``work(item)`` for every item of ``items``, in order, computed on a thread of its own
    up to ``depth`` items ahead of the caller. That thread alone iterates ``items`` (and
    closes it when it stops); closing this iterator early stops it; an error in ``work`` or
    in ``items`` is raised here, in order."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    done: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def run() -> None:
        source = iter(items)
        try:
            for item in source:
                if stop.is_set():
                    break
                _put(done, (work(item),), stop)
            _put(done, _DONE, stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, raised there
            _put(done, exc, stop)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()  # stops a detect_in_order stream's reader and workers

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        for (value,) in _taken(done):
            yield value
    finally:
        stop.set()
        _drain(done)
        thread.join()
        _drain(done)


def _in_order(items: _Chunk, future: Future | None, wanted: Callable[[int], bool],
              times: BusyTimes) -> Iterator[Detected]:
    found: Iterator[Detections] = iter(())
    if future is not None:
        detections, seconds = future.result()
        times.detect += seconds
        found = iter(detections)
    for index, frame in items:
        detected = frame is not None and wanted(index)
        yield Detected(index, frame, next(found) if detected else None)


def _taken(pending: queue.Queue) -> Iterator:
    """The entries a producer thread puts, until it puts _DONE; its error raised here."""
    while True:
        entry = pending.get()
        if entry is _DONE:
            return
        if isinstance(entry, BaseException):
            raise entry
        yield entry


def _put(pending: queue.Queue, entry: object, stop: threading.Event) -> None:
    """Put, waiting for room, unless the caller has stopped taking."""
    while not stop.is_set():
        try:
            pending.put(entry, timeout=_POLL)
            return
        except queue.Full:
            continue


def _drain(pending: queue.Queue) -> None:
    while True:
        try:
            pending.get_nowait()
        except queue.Empty:
            return
