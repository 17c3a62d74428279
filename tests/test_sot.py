"""autotrack.sot: the session store and the in-band state, without CVAT in between."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from autotrack.errors import StateError
from autotrack.sot import MAX_SOT_STATE_BYTES, SessionStore, SotState, load_sot
from autotrack.sot.session import Session


def test_session_store_expires_evicts_and_hands_out_once():
    now = [0.0]
    store = SessionStore(ttl_s=10, max_sessions=2, clock=lambda: now[0])
    ids = [store.new_id() for _ in range(3)]
    assert len(set(ids)) == 3 and all(len(i) >= 32 for i in ids)
    for i in ids:
        store.put(i, Session(object(), 0, (0, 0, 1, 1), 0.0))
    assert store.take(ids[0]) is None  # evicted: least recently used beyond max_sessions
    assert store.take(ids[1]) is not None and store.take(ids[1]) is None  # taken once
    now[0] = 11.0
    assert store.take(ids[2]) is None  # expired


def test_large_box_state_stays_under_16_kib_and_restores(vtest_video):
    cap = cv2.VideoCapture(str(vtest_video))
    ok, frame = cap.read()
    assert ok
    noisy = np.random.default_rng(0).integers(0, 256, frame.shape, dtype=np.uint8)
    tracker = load_sot("vittrack")
    state = tracker.init(noisy, (10, 10, 700, 560))  # noise: the worst case for JPEG
    text = state.encode()
    assert len(text) <= MAX_SOT_STATE_BYTES
    assert SotState.decode(text, "vittrack") == state
    with pytest.raises(StateError):
        SotState.decode(text, "nanotrack")
    tracker.store.clear()
    box, score, after = tracker.update(frame, SotState.decode(text, "vittrack"))
    assert tracker.reinits == 1 and after.step == 1 and after.session != state.session
