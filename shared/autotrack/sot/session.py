"""Server-side store of live trackers, keyed by unguessable ids.

``cv2.TrackerVit``/``cv2.TrackerNano`` keep their state inside C++ objects that cannot be
serialised, so a worker keeps them here between CVAT calls (as do OSTrack, with its template
tensor, and the mask tracker, with a live segmenter per session). The store is only a cache:
entries expire after ``ttl`` seconds unused, the least recently used entries go when
``max_sessions`` is reached or their estimated sizes add up to more than ``max_bytes``, and a
missing entry (another worker, a restart, an eviction) makes the tracker re-initialise from the
in-band state. An entry is *taken* out while a request uses it, so two requests never drive one
tracker at once.

Sizes are estimates made when an entry is put (:func:`estimate_bytes`): a numpy array or torch
tensor by its buffer, a live segmenter (:class:`autotrack.vos.sessions.LiveGroup`) by its
``memory_stats().feature_bytes``, a cv2 tracker by a per-kind constant measured here
(:data:`TRACKER_BYTES`; ``tests/test_session_memory.py`` measures it again). The byte budget
comes from ``AUTOTRACK_SESSION_MAX_MB`` (MiB, default :data:`DEFAULT_MAX_MB`; 0 turns the byte
bound off). The entry just put is always kept, even alone over the budget, so one large session
still works. docs/worker-memory.md says what each function's worker needs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import secrets
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from autotrack.settings import env_number

MiB = 1 << 20
DEFAULT_TTL_S = 15 * 60.0
DEFAULT_MAX_SESSIONS = 128
MAX_MB_ENV = "AUTOTRACK_SESSION_MAX_MB"
DEFAULT_MAX_MB = 256.0  # 32 live VitTrack or NanoTrack objects (see TRACKER_BYTES)

# What one live cv2 tracker adds to a worker's RSS once it has been initialised and updated
# (the net it loads for itself, its blobs and workspace): measured with opencv-python 5.1 on
# vtest.avi frames, 7.7 MB for TrackerVit and 7.4-7.8 MB for TrackerNano whatever the frame size;
# creating one costs 1.0 / 1.7 MB, its first init and update the rest. Rounded up.
TRACKER_BYTES: dict[str, int] = {
    "TrackerVit": 8 * MiB,
    "TrackerNano": 8 * MiB,
}
FROM_ENV = "env"  # SessionStore(max_bytes=FROM_ENV): the budget AUTOTRACK_SESSION_MAX_MB sets
# Expired or cleared entries this large are handed back to the system (glibc's malloc_trim);
# without it the freed cv2 buffers stay in the process's heap and its RSS never goes down.
TRIM_AFTER_BYTES = 16 * MiB


@dataclass
class Session:
    tracker: Any  # the live tracker: a cv2 tracker, a template tensor, a LiveGroup
    step: int  # the in-band step this tracker is at
    box: tuple[float, float, float, float]
    last_used: float


def estimate_bytes(tracker: object) -> int:
    """The memory one live entry holds, as well as can be told without measuring the process."""
    per_kind = TRACKER_BYTES.get(type(tracker).__name__)
    if per_kind is not None:
        return per_kind
    nbytes = getattr(tracker, "nbytes", None)  # numpy arrays, torch tensors, sized stand-ins
    if isinstance(nbytes, int) and not isinstance(nbytes, bool):
        return max(0, nbytes)
    if callable(getattr(tracker, "element_size", None)) and callable(
            getattr(tracker, "nelement", None)):  # a torch tensor without .nbytes
        return int(tracker.element_size() * tracker.nelement())  # type: ignore[attr-defined]
    owner = getattr(tracker, "segmenter", tracker)  # a LiveGroup, or a segmenter itself
    memory_stats = getattr(owner, "memory_stats", None)
    if callable(memory_stats):
        try:
            held = getattr(memory_stats(), "feature_bytes", None)
        except Exception:  # noqa: BLE001 - a size estimate must never fail a request
            held = None
        if isinstance(held, (int, float)) and not isinstance(held, bool) and held >= 0:
            return int(held)
    return sys.getsizeof(tracker)


def max_bytes_from_env(environ: Mapping[str, str] | None = None) -> int | None:
    """The byte budget ``AUTOTRACK_SESSION_MAX_MB`` sets (MiB), None when it is 0 (no bound)."""
    environ = os.environ if environ is None else environ
    mb = env_number(environ, MAX_MB_ENV, DEFAULT_MAX_MB, 0.0)
    return int(mb * MiB) if mb > 0 else None


class SessionStore:
    def __init__(self, ttl_s: float = DEFAULT_TTL_S, max_sessions: int = DEFAULT_MAX_SESSIONS,
                 clock: Callable[[], float] = time.monotonic, *,
                 max_bytes: int | None | str = FROM_ENV,
                 size_of: Callable[[object], int] = estimate_bytes) -> None:
        """``max_bytes``: the byte budget, None for none; by default ``AUTOTRACK_SESSION_MAX_MB``
        (:data:`DEFAULT_MAX_MB` MiB when unset). ``size_of`` estimates one entry's tracker."""
        if not ttl_s > 0 or max_sessions < 0:
            raise ValueError("ttl_s must be > 0 and max_sessions >= 0")
        if max_bytes == FROM_ENV:
            max_bytes = max_bytes_from_env()
        if max_bytes is not None and (isinstance(max_bytes, (bool, str)) or not max_bytes >= 0):
            raise ValueError(f"max_bytes must be a number of bytes >= 0, None or FROM_ENV, "
                             f"got {max_bytes!r}")
        self.ttl_s = float(ttl_s)
        self.max_sessions = int(max_sessions)
        self.max_bytes = None if max_bytes is None else int(max_bytes)
        self._clock = clock
        self._size_of = size_of
        self._items: OrderedDict[str, Session] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    @staticmethod
    def new_id() -> str:
        return secrets.token_urlsafe(24)  # 192 random bits, 32 characters

    @property
    def nbytes(self) -> int:
        """The estimated bytes of the live entries (after dropping expired ones)."""
        with self._lock:
            freed = self._expire()
            total = self._bytes
        _trim_if(freed)
        return total

    def take(self, session_id: str) -> Session | None:
        """Remove and return a live entry, or None when it is gone or expired."""
        with self._lock:
            freed = self._expire()
            session = self._items.pop(session_id, None)
            if session is not None:
                self._bytes -= self._sizes.pop(session_id)
        _trim_if(freed)
        return session

    def take_matching(self, session_id: str, step: int,
                      box: tuple[float, float, float, float]) -> Session | None:
        """Take the live entry only if it is at this step and box (the in-band state's);
        None means the caller must re-initialise from the in-band state."""
        live = self.take(session_id)
        if live is None or live.step != step or live.box != box:
            return None
        return live

    def put(self, session_id: str, session: Session) -> None:
        """Keep an entry; the least recently used go while over the count or byte budget (the
        entry just put is kept even alone over the byte budget)."""
        if self.max_sessions == 0:
            return
        size = max(0, int(self._size_of(session.tracker)))
        with self._lock:
            session.last_used = self._clock()
            if session_id in self._items:
                self._bytes -= self._sizes.pop(session_id)
            self._items[session_id] = session
            self._items.move_to_end(session_id)
            self._sizes[session_id] = size
            self._bytes += size
            freed = self._expire()
            while len(self._items) > self.max_sessions or (
                    self.max_bytes is not None and self._bytes > self.max_bytes
                    and len(self._items) > 1):
                key, _ = self._items.popitem(last=False)
                self._bytes -= self._sizes.pop(key)
        _trim_if(freed)

    def clear(self) -> None:
        with self._lock:
            freed = self._bytes
            self._items.clear()
            self._sizes.clear()
            self._bytes = 0
        _trim_if(freed)

    def __len__(self) -> int:
        with self._lock:
            freed = self._expire()
            count = len(self._items)
        _trim_if(freed)
        return count

    def _expire(self) -> int:
        """Drop entries unused for ttl_s; the bytes they held."""
        deadline = self._clock() - self.ttl_s
        freed = 0
        while self._items:
            key, oldest = next(iter(self._items.items()))
            if oldest.last_used >= deadline:
                break
            del self._items[key]
            size = self._sizes.pop(key)
            self._bytes -= size
            freed += size
        return freed


def _trim_if(freed: int) -> None:
    """Hand freed heap back to the system after a large expiry (glibc only; else nothing)."""
    if freed >= TRIM_AFTER_BYTES:
        trim = _malloc_trim()
        if trim is not None:
            trim(0)


_TRIM: list[Callable[[int], int] | None] = []


def _malloc_trim() -> Callable[[int], int] | None:
    if not _TRIM:
        function = None
        if sys.platform.startswith("linux"):
            try:
                function = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
                function.argtypes = [ctypes.c_size_t]
                function.restype = ctypes.c_int
            except (OSError, AttributeError):  # not glibc (musl): nothing to trim with
                function = None
        _TRIM.append(function)
    return _TRIM[0]
