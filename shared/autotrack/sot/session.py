"""Server-side store of live OpenCV trackers, keyed by unguessable ids.

``cv2.TrackerVit``/``cv2.TrackerNano`` keep their state inside C++ objects that cannot be
serialised, so a worker keeps them here between CVAT calls. The store is only a cache: entries
expire after ``ttl`` seconds unused, the least recently used entry goes when ``max_sessions``
is reached, and a missing entry (another worker, a restart, an eviction) makes the tracker
re-initialise from the in-band state. An entry is *taken* out while a request uses it, so two
requests never drive one tracker at once.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DEFAULT_TTL_S = 15 * 60.0
DEFAULT_MAX_SESSIONS = 128  # a VitTrack/NanoTrack session holds about 1-3 MB (net + buffers)


@dataclass
class Session:
    tracker: Any  # the live cv2 tracker
    step: int  # the in-band step this tracker is at
    box: tuple[float, float, float, float]
    last_used: float


class SessionStore:
    def __init__(self, ttl_s: float = DEFAULT_TTL_S, max_sessions: int = DEFAULT_MAX_SESSIONS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not ttl_s > 0 or max_sessions < 0:
            raise ValueError("ttl_s must be > 0 and max_sessions >= 0")
        self.ttl_s = float(ttl_s)
        self.max_sessions = int(max_sessions)
        self._clock = clock
        self._items: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def new_id() -> str:
        return secrets.token_urlsafe(24)  # 192 random bits, 32 characters

    def take(self, session_id: str) -> Session | None:
        """Remove and return a live entry, or None when it is gone or expired."""
        with self._lock:
            self._expire()
            return self._items.pop(session_id, None)

    def take_matching(self, session_id: str, step: int,
                      box: tuple[float, float, float, float]) -> Session | None:
        """Take the live entry only if it is at this step and box (the in-band state's);
        None means the caller must re-initialise from the in-band state."""
        live = self.take(session_id)
        if live is None or live.step != step or live.box != box:
            return None
        return live

    def put(self, session_id: str, session: Session) -> None:
        if self.max_sessions == 0:
            return
        with self._lock:
            session.last_used = self._clock()
            self._items[session_id] = session
            self._items.move_to_end(session_id)
            self._expire()
            while len(self._items) > self.max_sessions:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._items)

    def _expire(self) -> None:
        deadline = self._clock() - self.ttl_s
        while self._items:
            key, oldest = next(iter(self._items.items()))
            if oldest.last_used >= deadline:
                break
            del self._items[key]
