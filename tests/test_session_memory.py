"""autotrack.sot.session: live trackers bounded by bytes as well as by count (issue 12, item 10).

Stand-in sessions of known size check the bookkeeping; real VitTrack and NanoTrack trackers,
each in a fresh process (so that RSS is this worker's alone), check that the per-kind size is
what a live tracker really adds to RSS and that a worker following many distinct objects stays
under the figure docs/worker-memory.md gives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from autotrack.sot.session import (
    DEFAULT_MAX_MB,
    DEFAULT_MAX_SESSIONS,
    MAX_MB_ENV,
    TRACKER_BYTES,
    MiB,
    Session,
    SessionStore,
    estimate_bytes,
    max_bytes_from_env,
)
from autotrack.vos.base import MemoryStats
from conftest import MODELS_DIR, REPO_ROOT

# docs/worker-memory.md: a VitTrack or NanoTrack worker at the defaults, after any number of
# objects (measured: about 85 MiB loaded, 320 MiB with the cache full)
SOT_WORKER_MIB = 400


class Sized:
    """A stand-in live tracker of a known size."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes


def _session(nbytes: int) -> Session:
    return Session(Sized(nbytes), 0, (0.0, 0.0, 1.0, 1.0), 0.0)


def _store(max_bytes, max_sessions=DEFAULT_MAX_SESSIONS, ttl_s=60.0):
    now = [0.0]
    store = SessionStore(ttl_s, max_sessions, clock=lambda: now[0], max_bytes=max_bytes)
    return store, now


def test_the_byte_budget_evicts_the_least_recently_used():
    store, _ = _store(max_bytes=10 * MiB)
    ids = [store.new_id() for _ in range(5)]
    for i in ids[:3]:
        store.put(i, _session(3 * MiB))
    assert len(store) == 3 and store.nbytes == 9 * MiB
    live = store.take(ids[0])  # used again: now the most recently used
    assert store.nbytes == 6 * MiB
    store.put(ids[0], live)
    store.put(ids[3], _session(3 * MiB))  # 12 MiB: the least recently used (ids[1]) goes
    assert store.take(ids[1]) is None
    assert store.nbytes == 9 * MiB and len(store) == 3
    store.put(ids[4], _session(7 * MiB))  # 16 MiB: ids[2] then ids[0] go
    assert store.take(ids[2]) is None and store.take(ids[0]) is None
    assert store.nbytes == 10 * MiB and len(store) == 2
    assert store.take(ids[3]) is not None and store.take(ids[4]) is not None
    assert store.nbytes == 0 and len(store) == 0


def test_one_session_over_the_budget_is_still_kept_alone():
    store, _ = _store(max_bytes=4 * MiB)
    small, big = store.new_id(), store.new_id()
    store.put(small, _session(1 * MiB))
    store.put(big, _session(9 * MiB))
    assert store.take(small) is None
    assert store.take(big) is not None  # the newest entry is never evicted by its own put


def test_count_cap_ttl_and_replacing_an_entry_keep_the_byte_count_right():
    store, now = _store(max_bytes=100 * MiB, max_sessions=2, ttl_s=10.0)
    a, b, c = (store.new_id() for _ in range(3))
    store.put(a, _session(1 * MiB))
    store.put(b, _session(2 * MiB))
    store.put(c, _session(4 * MiB))  # the count cap evicts a
    assert store.nbytes == 6 * MiB and store.take(a) is None
    store.put(c, _session(8 * MiB))  # put again without take: replaced, not counted twice
    assert store.nbytes == 10 * MiB and len(store) == 2
    now[0] = 11.0
    assert store.nbytes == 0 and len(store) == 0  # expired
    store.put(a, _session(1 * MiB))
    store.clear()
    assert store.nbytes == 0


def test_zero_sessions_keeps_nothing_and_no_budget_keeps_everything():
    store, _ = _store(max_bytes=MiB, max_sessions=0)
    store.put(store.new_id(), _session(1))
    assert len(store) == 0 and store.nbytes == 0
    store, _ = _store(max_bytes=None, max_sessions=1000)
    for _ in range(200):
        store.put(store.new_id(), _session(8 * MiB))
    assert len(store) == 200 and store.nbytes == 1600 * MiB


def test_the_budget_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(MAX_MB_ENV, raising=False)
    assert SessionStore().max_bytes == int(DEFAULT_MAX_MB * MiB) == 256 * MiB
    monkeypatch.setenv(MAX_MB_ENV, "64")
    assert SessionStore().max_bytes == 64 * MiB
    store = SessionStore(max_sessions=100)
    for _ in range(20):
        store.put(store.new_id(), _session(8 * MiB))
    assert len(store) == 8 and store.nbytes == 64 * MiB
    monkeypatch.setenv(MAX_MB_ENV, "0")
    assert SessionStore().max_bytes is None and max_bytes_from_env() is None
    assert SessionStore(max_bytes=5).max_bytes == 5  # an explicit budget wins
    for bad in ("-1", "lots", "nan"):
        monkeypatch.setenv(MAX_MB_ENV, bad)
        with pytest.raises(ValueError, match=MAX_MB_ENV):
            SessionStore()
    with pytest.raises(ValueError):
        SessionStore(max_bytes=-1)


def test_the_nuclio_tracker_stores_get_the_budget(monkeypatch):
    from autotrack.cvat.nuclio.tracker import TrackerSettings

    monkeypatch.setenv(MAX_MB_ENV, "48")
    settings = TrackerSettings.from_env()
    store = SessionStore(settings.session_ttl_s, settings.max_sessions)  # as tracker.py builds it
    assert store.max_bytes == 48 * MiB and store.max_sessions == DEFAULT_MAX_SESSIONS


def test_sizes_of_what_the_trackers_keep():
    import cv2

    torch = pytest.importorskip("torch")
    assert estimate_bytes(np.zeros((3, 128, 128), np.float32)) == 3 * 128 * 128 * 4  # OSTrack
    assert estimate_bytes(torch.zeros(1, 3, 128, 128)) == 3 * 128 * 128 * 4
    assert estimate_bytes(Sized(12345)) == 12345

    class Segmenter:  # a live mask session's segmenter reports what its memory holds
        def memory_stats(self):
            return MemoryStats(frames_kept=3, feature_bytes=5 * MiB, objects=2)

    class Broken:
        def memory_stats(self):
            raise RuntimeError("no stats")

    from autotrack.vos.sessions import LiveGroup

    assert estimate_bytes(LiveGroup(Segmenter(), {1: "a", 2: "b"})) == 5 * MiB
    assert estimate_bytes(LiveGroup(Broken(), {})) > 0  # never fails a request
    assert estimate_bytes(object()) > 0

    vit = cv2.TrackerVit_Params()
    vit.net = str(MODELS_DIR / "object_tracking_vittrack_2023sep.onnx")
    assert estimate_bytes(cv2.TrackerVit.create(vit)) == TRACKER_BYTES["TrackerVit"]
    nano = cv2.TrackerNano_Params()
    nano.backbone = str(MODELS_DIR / "nanotrack_backbone_sim.onnx")
    nano.neckhead = str(MODELS_DIR / "nanotrack_head_sim.onnx")
    assert estimate_bytes(cv2.TrackerNano.create(nano)) == TRACKER_BYTES["TrackerNano"]


def test_mask_sessions_are_sized_by_their_segmenters_memory():
    from autotrack.vos.mask_state import ShapePrompt
    from autotrack.vos.sessions import MaskTracker

    class Segmenter:
        def __init__(self):
            self.frames = 0

        def step(self, image, prompts=()):
            self.frames += 1
            return {p.object_id: np.ones(image.shape[:2], bool) for p in prompts}

        def forget(self, object_id):
            pass

        def memory_stats(self):
            return MemoryStats(self.frames, 30 * MiB, 1)

    store, _ = _store(max_bytes=100 * MiB)
    tracker = MaskTracker("xmem", Segmenter, store)
    image = np.zeros((32, 48, 3), np.uint8)
    prompt = ShapePrompt("rectangle", box=(4.0, 4.0, 20.0, 20.0))
    sessions = [tracker.start(image, [prompt])[0][1].session for _ in range(5)]
    assert len(store) == 3 and store.nbytes == 90 * MiB
    assert store.take(sessions[0]) is None and store.take(sessions[-1]) is not None


# --- real cv2 trackers, each kind in a fresh worker process -------------------------------------

_WORKER = r"""
import gc, json, os, sys
from types import SimpleNamespace

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def peak_rss():  # VmHWM: this process's own peak (ru_maxrss would carry pytest's over exec)
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024

import cv2
import numpy as np
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
from autotrack.cvat.nuclio import tracker

kind, count, video = sys.argv[1], int(sys.argv[2]), sys.argv[3]

class Logger:
    def __getattr__(self, name):
        return lambda *args, **kwargs: None

context = SimpleNamespace(logger=Logger(), user_data=SimpleNamespace())
sot = tracker.init_context(context, kind).tracker  # the store the Nuclio door builds
store = sot.store
capture = cv2.VideoCapture(video)
frames = [capture.read()[1] for _ in range(2)]
capture.release()
rng = np.random.default_rng(0)

def box():
    x, y = float(rng.integers(0, 600)), float(rng.integers(0, 400))
    return (x, y, x + float(rng.integers(24, 80)), y + float(rng.integers(48, 140)))

state = sot.init(frames[0], box())
sot.update(frames[1], state)
store.clear()
gc.collect()
ready = rss()
held = [sot._create() for _ in range(12)]  # what one live tracker adds, measured
for live in held:
    x1, y1, x2, y2 = box()
    live.init(frames[0], (int(x1), int(y1), int(x2 - x1), int(y2 - y1)))
    live.update(frames[1])
gc.collect()
per_tracker = (rss() - ready) / len(held)
name = type(held[0]).__name__
del held, live
for _ in range(count):  # distinct objects, each started and followed one frame
    state = sot.init(frames[0], box())
    sot.update(frames[1], state)
gc.collect()
full = rss()
peak = peak_rss()
live_sessions, nbytes = len(store), store.nbytes
store.clear()
gc.collect()
print(json.dumps({"ready": ready, "full": full, "peak": peak, "cleared": rss(),
                  "per_tracker": per_tracker, "name": name, "live": live_sessions,
                  "nbytes": nbytes, "max_bytes": store.max_bytes}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize("kind", ["vittrack", "nanotrack"])
def test_a_worker_following_many_objects_stays_under_its_documented_memory(kind, vtest_video):
    env = {key: value for key, value in os.environ.items() if key != MAX_MB_ENV}
    env.update(AUTOTRACK_MODELS=str(MODELS_DIR), AUTOTRACK_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(REPO_ROOT / "shared"),
                                           env.get("PYTHONPATH", "")]))
    count = 96  # three times what the default budget keeps
    done = subprocess.run([sys.executable, "-c", _WORKER, kind, str(count), str(vtest_video)],
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    m = SimpleNamespace(**json.loads(done.stdout.strip().splitlines()[-1]))
    budget = int(DEFAULT_MAX_MB * MiB)
    constant = TRACKER_BYTES[m.name]
    # the per-kind size is what a live tracker adds to RSS, rounded up (not a wild guess)
    assert constant / 2 <= m.per_tracker <= constant * 1.1, (m.name, m.per_tracker / MiB)
    assert m.max_bytes == budget
    assert m.live == budget // constant and m.nbytes <= budget
    grown = (m.peak - m.ready) / MiB
    assert grown <= budget / MiB * 1.1 + 16, grown  # the 12 measured trackers' memory is reused
    assert m.peak <= SOT_WORKER_MIB * MiB, m.peak / MiB
    # cleared (or expired) sessions go back to the system, not just to the heap
    assert m.cleared - m.ready <= (m.full - m.ready) / 4, (m.ready / MiB, m.cleared / MiB)
