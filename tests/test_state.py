"""Tracker state is untrusted input: every malformed, edited or oversized state is refused."""

import json

import numpy as np
import pytest

from autotrack import state as state_codec
from autotrack.detections import Detections
from autotrack.errors import StateError
from autotrack.synthetic import SceneConfig, make_scene
from autotrack.trackers.bytetrack import ByteTrack
from helpers import edit_array, resign


@pytest.fixture(scope="module")
def saved_state() -> str:
    tracker = ByteTrack()
    for d in make_scene(SceneConfig(objects=8, frames=40, seed=5)).detections:
        tracker.update(d)
    assert len(tracker._table) > 0
    return tracker.to_state()


def test_state_is_plain_json_without_pickle(saved_state):
    envelope = json.loads(saved_state)
    assert envelope["format"] == "autotrack-state" and envelope["kind"] == "bytetrack"
    assert envelope["version"] == 1
    assert "pickle" not in saved_state and "py/object" not in saved_state


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s[: len(s) // 2], "not valid JSON"),
    (lambda s: "", "not valid JSON"),
    (lambda s: "[1, 2]", "not an autotrack-state"),
    (lambda s: s.replace('"version":1', '"version":99'), "version 99 is not supported"),
    (lambda s: s.replace('"kind":"bytetrack"', '"kind":"deepsort"'), "is for 'deepsort'"),
    (lambda s: s.replace('"frame_id":40', '"frame_id":41'), "digest does not match"),
    (lambda s: s.replace('"digest":"sha256:', '"digest":"sha256:0'), "digest does not match"),
    (lambda s: s.replace('"frame_id":40', '"frame_id":NaN'), "not valid JSON"),
])
def test_tampered_or_truncated_state_refused(saved_state, mutate, message):
    with pytest.raises(StateError, match=message):
        ByteTrack.from_state(mutate(saved_state))


def test_oversized_state_refused_before_parsing():
    huge = '{"format": "autotrack-state", "pad": "' + "x" * state_codec.MAX_STATE_BYTES + '"}'
    with pytest.raises(StateError, match="over the"):
        ByteTrack.from_state(huge)


def test_deeply_nested_state_refused():
    with pytest.raises(StateError):
        ByteTrack.from_state("[" * 100_000 + "]" * 100_000)


def test_non_string_state_refused():
    with pytest.raises(StateError, match="must be a JSON string"):
        ByteTrack.from_state({"format": "autotrack-state"})  # type: ignore[arg-type]


def _semantic_cases():
    def dup_ids(a):
        a[:] = a[0]
        return a

    def nan(a):
        a = a.astype(np.float64)
        a[0, 0] = np.nan
        return a

    return [
        ("ids", dup_ids, "duplicate track IDs"),
        ("ids", lambda a: a + 10_000, "outside"),
        ("kalman", nan, "NaN"),
        ("kalman", lambda a: a[:, :10], "shape"),
        ("state", lambda a: a * 0 + 7, "unknown track state"),
        ("score", lambda a: a + 5, "out-of-range"),
        ("ids", lambda a: a.astype(np.float64), "dtype"),
        ("end_frame", lambda a: a + 1000, "inconsistent"),
    ]


@pytest.mark.parametrize("key, fn, message", _semantic_cases())
def test_well_signed_but_impossible_state_refused(saved_state, key, fn, message):
    envelope = json.loads(saved_state)
    edit_array(envelope, key, fn)
    with pytest.raises(StateError, match=message):
        ByteTrack.from_state(resign(envelope))


@pytest.mark.parametrize("edit, message", [
    (lambda e: e["payload"]["config"].update(track_high_thresh=3.0), "invalid"),
    (lambda e: e["payload"]["config"].update(track_buffer="30"), "must be int"),
    (lambda e: e["payload"]["config"].update(evil=1), "unknown fields"),
    (lambda e: e["payload"]["config"].pop("match_thresh"), "lacks fields"),
    (lambda e: e["payload"].update(next_id=-1), "next_id"),
    (lambda e: e["payload"]["tracks"]["ids"]["__ndarray__"].update(dtype="|O"), "disallowed dtype"),
    (lambda e: e["payload"]["tracks"]["ids"]["__ndarray__"].update(data="@@@"), "not valid base64"),
    (lambda e: e["payload"]["tracks"]["ids"]["__ndarray__"].update(shape=[10**9]), "size limit"),
    (lambda e: e["payload"]["tracks"]["ids"]["__ndarray__"].update(shape=[1, 2, 3, 4, 5]), "shape"),
    (lambda e: e["payload"]["tracks"]["ids"]["__ndarray__"].update(extra=1), "exactly dtype"),
    (lambda e: e["payload"]["tracks"].pop("kalman"), "must be an array"),
])
def test_malformed_payload_refused(saved_state, edit, message):
    envelope = json.loads(saved_state)
    edit(envelope)
    with pytest.raises(StateError, match=message):
        ByteTrack.from_state(resign(envelope))


def test_keyed_state_refuses_a_forged_digest(saved_state, monkeypatch):
    monkeypatch.setenv("AUTOTRACK_STATE_KEY", "server-secret")
    tracker = ByteTrack()
    tracker.update(Detections(np.array([[0.0, 0, 10, 20]]), np.array([0.9]), np.array([0])))
    keyed = tracker.to_state()
    assert json.loads(keyed)["digest"].startswith("hmac-sha256:")
    ByteTrack.from_state(keyed)  # accepted with the key
    # A client can recompute a plain hash, but not the HMAC.
    with pytest.raises(StateError, match="digest does not match"):
        ByteTrack.from_state(saved_state)
    monkeypatch.setenv("AUTOTRACK_STATE_KEY", "another-secret")
    with pytest.raises(StateError, match="digest does not match"):
        ByteTrack.from_state(keyed)


def _jpeg_with_declared_size(width: int, height: int) -> bytes:
    """A real 16x16 JPEG whose frame header is rewritten to claim another size."""
    import cv2

    data = bytearray(cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))[1].tobytes())
    sof = next(i for i in range(2, len(data) - 9) if data[i] == 0xFF and data[i + 1] == 0xC0)
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def test_state_jpeg_size_is_checked_from_its_header_before_decoding():
    from autotrack.state import decode_state_jpeg

    assert decode_state_jpeg(_jpeg_with_declared_size(16, 16), 256, "template").shape == (16, 16, 3)
    # a forged header would make the decoder allocate 30000 x 30000 x 3 bytes: refused unread
    with pytest.raises(StateError, match="at most 256x256"):
        decode_state_jpeg(_jpeg_with_declared_size(30000, 30000), 256, "template")
    with pytest.raises(StateError, match="corrupt or truncated"):
        decode_state_jpeg(_jpeg_with_declared_size(16, 16)[:-40], 256, "template")
    png = cv2_png(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(StateError, match="must be a JPEG"):
        decode_state_jpeg(png, 256, "template")


def cv2_png(image: np.ndarray) -> bytes:
    import cv2

    return cv2.imencode(".png", image)[1].tobytes()
