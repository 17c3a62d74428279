"""serverless/bytetrack: YOLOX-Nano and ByteTrack's association as a CVAT ``type: tracker``
function, driven through nuclio-sdk's test platform one call per frame, every state through
JSON as CVAT keeps it, and through the model of CVAT's lambda manager and tracker UI.

The reference is the person of tests/test_nuclio_tracker.py: vtest.avi frames 300-399, the
detector's boxes chained frame to frame by IoU.
"""

from __future__ import annotations

import base64
import json

import cv2
import numpy as np
import pytest

import cvat_ui
import test_nuclio_tracker as sot_tests
from autotrack.state import encode_state
from autotrack.trackers.given_objects import MAX_OBJECT_STATE_BYTES
from helpers import ndarray_spec, resign
from test_nuclio_tracker import _function, _platform, call, hit_rate, ok_json, track

clip = sot_tests.clip  # fixtures: vtest frames 300-399 and the person's detector chain
reference = sot_tests.reference

FUNCTION = "bytetrack"
PARKED_CAR = [732.0, 52.0, 767.0, 94.0]  # YOLOX-Nano: a car (0.79) at frame 300


@pytest.fixture(scope="module")
def bytetrack():
    return _platform(FUNCTION)


def test_follows_a_person_through_100_frames_one_detector_call_each(bytetrack, clip,
                                                                    reference):
    before = _function(bytetrack).tracker.detector_calls
    boxes, sizes = track([bytetrack], clip[1], reference[0].tolist())
    assert hit_rate(boxes, reference) >= 0.9
    assert max(sizes) <= MAX_OBJECT_STATE_BYTES
    # the start learns the class from a detector call, then one call per frame
    assert _function(bytetrack).tracker.detector_calls - before == len(clip[1])


def test_two_workers_sharing_no_memory_give_the_same_boxes(bytetrack, clip, reference):
    """Object states carry everything: alternating workers answer what one worker does."""
    one, _ = track([bytetrack], clip[1][:40], reference[0].tolist())
    a, b = _platform(FUNCTION), _platform(FUNCTION)
    assert _function(a) is not _function(b)
    two, _ = track([a, b], clip[1][:40], reference[0].tolist())
    assert two == one


def test_many_objects_take_one_detector_call_and_labels_restrict_classes(bytetrack, clip):
    function = _function(bytetrack)
    shapes = [[315, 211, 347, 295],
              {"type": "rectangle", "points": PARKED_CAR, "rotation": 0, "label_id": 3},
              {"type": "rectangle", "points": [100, 100, 140, 200], "label": "Person"},
              {"type": "rectangle", "points": [5, 5, 25, 25], "label": "unicorn"}]
    first = ok_json(call(*bytetrack, {"image": clip[1][0], "shapes": shapes, "states": []}))
    labels = [json.loads(s)["payload"]["label"] for s in first["states"]]
    assert labels == ["person", "car", "person", ""]  # learnt, learnt, given, any class
    before = function.tracker.detector_calls
    nxt = ok_json(call(*bytetrack, {"image": clip[1][1], "shapes": [None] * 4,
                                    "states": first["states"]}))
    assert len(nxt["shapes"]) == len(nxt["states"]) == 4
    assert function.tracker.detector_calls - before == 1
    # an old UI sending both: the state continues, a new shape starts, still one call
    before = function.tracker.detector_calls
    mixed = ok_json(call(*bytetrack, {"image": clip[1][2], "shapes": [None, [10, 10, 60, 90]],
                                      "states": [nxt["states"][0]]}))
    assert len(mixed["states"]) == 2 and function.tracker.detector_calls - before == 1


def test_a_lost_object_keeps_a_box_the_ui_accepts(bytetrack, clip):
    """On blank frames the detector sees nobody: the object coasts, then holds, and every
    answer goes through CVAT's lambda manager and tracker UI (a null would fail the batch)."""
    _, data = cv2.imencode(".jpg", np.full((576, 768, 3), 90, np.uint8))
    blank = base64.b64encode(data.tobytes()).decode()
    annotations = {"type": "tracker", "spec": ""}

    def function(request):
        return ok_json(call(*bytetrack, request))

    images = [clip[1][0], clip[1][1]] + [blank] * 40
    seen = cvat_ui.track_through_cvat(function, images, [[315, 211, 347, 295]], annotations)
    boxes = [frame[0] for frame in seen]
    assert all(b[2] > b[0] and b[3] > b[1] for b in boxes)
    assert boxes[2] != boxes[3]  # coasting on its prediction
    assert boxes[-1] == boxes[-2] == boxes[-5]  # held after the 30-frame buffer
    old_ui = cvat_ui.track_through_cvat(function, images[:6], [[315, 211, 347, 295]],
                                        annotations, newest=False)
    assert len(old_ui) == 6


def _resigned(state: str, **changes) -> str:
    envelope = json.loads(state)
    envelope["payload"].update(changes)
    return resign(envelope)


def _bad_cases(state: str, sot_state: str, image: str) -> list[tuple[str, object, int, str]]:
    box = [315, 211, 347, 295]
    return sot_tests.request_cases(state, image, MAX_OBJECT_STATE_BYTES) + [
        ("label a number", {"image": image, "shapes": [{"type": "rectangle", "points": box,
                                                         "label": 3}]}, 400, "label"),
        ("label too long", {"image": image, "shapes": [{"type": "rectangle", "points": box,
                                                         "label": "x" * 500}]}, 400, "label"),
        ("a vittrack state", {"image": image, "states": [sot_state]}, 400, "sot-vittrack"),
        ("state edited filter", {"image": image, "states": [sot_tests._edit(
            state, lambda e: e["payload"].update(kalman=ndarray_spec([1.0] * 20)))]}, 400, "digest"),
        ("state edited label", {"image": image, "states": [sot_tests._edit(
            state, lambda e: e["payload"].update(label="car"))]}, 400, "digest"),
        ("state valid digest, missing fields", {"image": image, "states": [encode_state(
            "bytetrack-object", 1, {"box": np.array([1.0, 2, 30, 40])})]}, 400, "field"),
        ("state valid digest, unknown class", {"image": image, "states": [
            _resigned(state, label="unicorn")]}, 400, "classes"),
        ("state valid digest, box off the frame", {"image": image, "states": [
            _resigned(state, box=ndarray_spec([9e5, 9e5, 9.5e5, 9.5e5]))]}, 400, "overlap"),
        ("state valid digest, filter not positive definite", {"image": image, "states": [
            _resigned(state, kalman=ndarray_spec([330, 250, 0.4, 80, 0, 0, 0, 0] + [-1.0] * 12))]},
         400, "positive definite"),
        ("state valid digest, lost beyond its steps", {"image": image, "states": [
            _resigned(state, lost=5, step=2)]}, 400, "lost"),
        ("state valid digest, float32 gallery", {"image": image, "states": [
            _resigned(state, gallery=ndarray_spec(np.ones((1, 4)) / 2, "<f4"),
                      embedder="x")]}, 400, "float16"),
        ("state valid digest, extra field", {"image": image, "states": [
            _resigned(state, session="A" * 32)]}, 400, "unknown fields"),
    ]


def test_malformed_requests_and_states_get_a_clear_4xx(bytetrack, clip):
    state = ok_json(call(*bytetrack, {"image": clip[1][0], "shapes": [[315, 211, 347, 295]],
                                      "states": []}))["states"][0]
    vittrack = _platform("vittrack")
    sot_state = ok_json(call(*vittrack, {"image": clip[1][0], "shapes": [[315, 211, 347, 295]],
                                         "states": []}))["states"][0]
    cases = _bad_cases(state, sot_state, clip[1][1])
    for name, body, status, words in cases:
        response = call(*bytetrack, body)
        assert response.status_code == status, (name, response.body)
        error = json.loads(response.body)
        assert error["status"] == status and words.lower() in error["error"].lower(), \
            (name, error)
    assert len(cases) >= 35
    ok_json(call(*bytetrack, {"image": clip[1][1], "states": [state]}))  # still works
