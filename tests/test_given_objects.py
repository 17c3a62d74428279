"""autotrack.trackers.given_objects: ByteTrack's association for boxes a person drew, on a
scripted detector (what it returns on each frame is written in the test)."""

from __future__ import annotations

import json
from itertools import pairwise

import numpy as np
import pytest

from autotrack.detections import Detections
from autotrack.errors import StateError
from autotrack.geometry import xyah_to_xyxy
from autotrack.trackers.given_objects import (
    MAX_OBJECT_STATE_BYTES,
    GivenObject,
    GivenObjectsConfig,
    GivenObjectTracker,
    Start,
)
from helpers import ndarray_spec, resign

CLASSES = ("person", "car", "dog")
FRAME = np.zeros((240, 320, 3), np.uint8)


class Scripted:
    """A detector that returns, frame after frame, the detections it was given."""

    class_names = CLASSES

    def __init__(self, frames=()):
        self.frames = list(frames)
        self.calls = 0

    def detect(self, frame):
        self.calls += 1
        if not self.frames:
            return Detections.empty()
        return self.frames.pop(0)


class Embedder:
    """Appearance from the box's left edge: boxes starting left of x=150 look alike."""

    name = "scripted-embedder"
    dim = 4
    input_hw = (8, 4)

    def embed(self, frame, boxes):
        boxes = np.asarray(boxes, float).reshape(-1, 4)
        out = np.zeros((len(boxes), 4), np.float32)
        out[boxes[:, 0] < 150, 0] = 1.0
        out[boxes[:, 0] >= 150, 1] = 1.0
        return out


def dets(*rows) -> Detections:
    """Detections from (x1, y1, x2, y2, score, class) rows."""
    array = np.array(rows, float).reshape(-1, 6)
    return Detections(array[:, :4], array[:, 4], array[:, 5].astype(int))


def walk(x: float, y: float = 50.0, w: float = 30.0, h: float = 80.0):
    return (x, y, x + w, y + h)


def run(tracker, frames, states):
    """Feed each frame's detections; returns per frame the results for every object."""
    out = []
    for detections in frames:
        tracker.detector.frames.append(detections)
        results = tracker.step(FRAME, states)
        states = [r.state for r in results]
        out.append(results)
    return out


def start(tracker, *starts):
    return [r.state for r in tracker.step(FRAME, list(starts))]


def test_a_start_takes_the_class_of_the_detection_it_overlaps():
    tracker = GivenObjectTracker(Scripted([dets((10, 50, 40, 130, 0.9, 2),
                                                (200, 50, 230, 130, 0.9, 1))]))
    dog, nothing, car_by_label, unknown = start(
        tracker, Start(walk(11)), Start(walk(100)), Start(walk(200), "CAR"),
        Start(walk(100), "unicorn"))
    assert (dog.label, nothing.label, car_by_label.label, unknown.label) == ("dog", "", "car", "")
    assert tracker.detector.calls == 1  # one call for all four starts
    labelled = GivenObjectTracker(Scripted())
    start(labelled, Start(walk(10), "person"))
    assert labelled.detector.calls == 0  # nothing to learn from a detector


def test_answers_keep_the_way_the_person_draws_boxes():
    """A box drawn looser than the detector's keeps its margins on every answer; the filter
    follows the detections themselves."""
    tracker = GivenObjectTracker(Scripted([dets((20, 50, 50, 130, 0.9, 0))]))
    (state,) = start(tracker, Start((17, 46, 53, 138)))  # 10% of the width, 5%/10% height
    assert state.margin == pytest.approx((-0.1, -0.05, 0.1, 0.1))
    assert xyah_to_xyxy(state.kalman[None, :4])[0].tolist() == pytest.approx([20, 50, 50, 130])
    results = run(tracker, [dets((24, 50, 54, 130, 0.9, 0))], [state])
    assert results[0][0].box == pytest.approx((21, 46, 57, 138))
    plain = GivenObjectTracker(Scripted([dets((20, 50, 50, 130, 0.9, 0))]),
                               GivenObjectsConfig(report_detection_boxes=False))
    (state,) = start(plain, Start((17, 46, 53, 138)))
    (posterior,) = run(plain, [dets((24, 50, 54, 130, 0.9, 0))], [state])[0]
    assert 17 < posterior.box[0] < 21  # the filter's box, lagging, in the drawn margins


def test_a_half_hidden_object_keeps_its_full_box():
    """A nearer person (bottom edge lower) walks over the object's right half: the detection
    shrinks to the visible left part; the answer keeps the object's width on the hidden side,
    and the filter keeps its size; a box beside it, or a farther one, changes nothing."""
    tracker = GivenObjectTracker(Scripted())
    (state,) = start(tracker, Start(walk(100), "person"))
    still = [dets((100, 50, 130, 130, 0.9, 0))] * 3
    hidden = [dets((100, 50, 115, 130, 0.8, 0), (112, 60, 152, 160, 0.9, 0))]
    results = run(tracker, still + hidden, [state])
    assert results[-1][0].box == pytest.approx((100, 50, 130, 130), abs=0.5)
    assert results[-1][0].state.kalman[2] * results[-1][0].state.kalman[3] == \
        pytest.approx(30, abs=0.5)  # the filter's width
    farther = [dets((100, 50, 115, 130, 0.8, 0), (112, 40, 152, 120, 0.9, 0))]
    (state,) = start(tracker, Start(walk(100), "person"))
    assert run(tracker, still + farther, [state])[-1][0].box[2] < 120  # not occluded: as seen
    off = GivenObjectTracker(Scripted(), GivenObjectsConfig(amodal_boxes=False))
    (state,) = start(off, Start(walk(100), "person"))
    assert run(off, still + hidden, [state])[-1][0].box[2] < 120


def test_two_stages_coasting_and_refinding_within_the_buffer():
    tracker = GivenObjectTracker(Scripted())
    (state,) = start(tracker, Start(walk(10), "person"))
    frames = [dets((10 + 3 * k, 50, 40 + 3 * k, 130, 0.9, 0)) for k in range(1, 8)]
    frames += [dets((34, 50, 64, 130, 0.3, 0))]  # occluded: a low score, second stage
    frames += [Detections.empty()] * 5  # gone: coasts on the prediction
    frames += [dets((10 + 3 * 14, 50, 40 + 3 * 14, 130, 0.8, 0))]  # back where it would be
    results = run(tracker, frames, [state])
    found = [r[0].found for r in results]
    assert found == [True] * 8 + [False] * 5 + [True]
    assert results[7][0].score == pytest.approx(0.3)
    coasting = [r[0].box[0] for r in results[8:13]]
    assert all(b > a for a, b in pairwise(coasting))  # moves on with its velocity
    assert results[-1][0].state.lost == 0 and results[12][0].state.lost == 5
    assert tracker.detector.calls == len(frames)


def test_a_low_score_box_does_not_restart_a_lost_object():
    """Only objects followed until the last frame take low-score boxes (ByteTrack's rule)."""
    tracker = GivenObjectTracker(Scripted())
    (state,) = start(tracker, Start(walk(10), "person"))
    results = run(tracker, [Detections.empty(), dets((10, 50, 40, 130, 0.3, 0))], [state])
    assert [r[0].found for r in results] == [False, False]


def test_after_the_buffer_an_object_is_held_and_can_still_be_found_there():
    config = GivenObjectsConfig(track_buffer=3)
    tracker = GivenObjectTracker(Scripted(), config)
    (state,) = start(tracker, Start(walk(10), "person"))
    moving = [dets((10 + 4 * k, 50, 40 + 4 * k, 130, 0.9, 0)) for k in range(1, 5)]
    results = run(tracker, moving + [Detections.empty()] * 8, [state])
    boxes = [r[0].box for r in results[4:]]
    assert boxes[0] != boxes[2]  # coasting: moves
    assert boxes[3] == boxes[4] == boxes[-1]  # held after 3 frames: stays
    held = results[-1][0].state
    assert held.lost == 8 and not held.kalman[4:8].any()  # the filter stopped
    again = run(tracker, [dets((*boxes[-1], 0.9, 0))], [held])
    assert again[0][0].found


def test_one_assignment_for_all_objects_and_classes_kept_apart():
    """Two people walking towards each other and a car at the same place: each object keeps
    its own, and one detector call serves all of them."""
    tracker = GivenObjectTracker(Scripted())
    states = start(tracker, Start(walk(10), "person"), Start(walk(200), "person"),
                   Start(walk(100), "car"))
    frames = []
    for k in range(1, 12):
        frames.append(dets((10 + 8 * k, 50, 40 + 8 * k, 130, 0.9, 0),
                           (200 - 8 * k, 50, 230 - 8 * k, 130, 0.9, 0),
                           (100, 50, 130, 130, 0.9, 1)))
    results = run(tracker, frames, states)
    last = results[-1]
    assert last[0].box[0] == pytest.approx(98, abs=3)
    assert last[1].box[0] == pytest.approx(112, abs=3)
    assert last[2].box[0] == pytest.approx(100, abs=1) and all(r.found for r in last)
    assert tracker.detector.calls == len(frames)
    # a person object never takes the car's box
    (alone,) = start(GivenObjectTracker(Scripted()), Start(walk(100), "person"))
    lonely = GivenObjectTracker(Scripted([dets((100, 50, 130, 130, 0.95, 1))]))
    assert not lonely.step(FRAME, [alone])[0].found


def test_restarting_from_the_state_anywhere_is_exact():
    """A worker that never saw the object continues it from the state text alone."""
    frames = [dets((10 + 5 * k, 50, 40 + 5 * k, 130, 0.9 - 0.05 * (k % 3), 0)) if k % 4
              else Detections.empty() for k in range(1, 20)]
    first = GivenObjectTracker(Scripted([Detections.empty()]))
    (state,) = start(first, Start(walk(10)))
    together = run(first, list(frames), [state])
    text = state.encode()
    boxes = []
    for detections in frames:  # a new tracker and a JSON round trip every frame
        worker = GivenObjectTracker(Scripted([detections]))
        (result,) = worker.step(FRAME, [GivenObject.decode(json.loads(json.dumps(text)),
                                                            CLASSES)])
        text = result.state.encode()
        boxes.append(result.box)
    assert boxes == [r[0].box for r in together]


def test_appearance_gallery_is_bounded_float16_and_refinds_a_lost_object():
    config = GivenObjectsConfig(gallery_size=4, track_buffer=50)
    tracker = GivenObjectTracker(Scripted(), config, embedder=Embedder())
    (state,) = start(tracker, Start(walk(20), "person"))
    assert state.gallery.dtype == np.float16 and state.gallery.shape == (1, 4)
    frames = [dets((20 + 2 * k, 50, 50 + 2 * k, 130, 0.9, 0)) for k in range(1, 7)]
    frames += [Detections.empty()] * 10
    # back far from where it coasted to (no IoU), next to someone who looks different
    frames += [dets((78, 52, 108, 132, 0.9, 0), (160, 50, 190, 130, 0.9, 0))]
    results = run(tracker, frames, [state])
    assert results[5][0].state.gallery.shape == (4, 4)  # bounded
    last = results[-1][0]
    assert last.found and last.detection == 0 and last.box[0] == pytest.approx(78, abs=8)
    # someone who looks different is never taken, even where the object is predicted
    (state,) = start(GivenObjectTracker(Scripted(), embedder=Embedder()), Start(walk(20), "person"))
    other = GivenObjectTracker(Scripted([dets((20, 50, 50, 130, 0.9, 0))]), embedder=Embedder())
    object.__setattr__(state, "gallery", np.array([[0, 0, 1, 0]], np.float16))
    assert not other.step(FRAME, [state])[0].found


def test_the_state_stays_under_16_kb_with_a_full_gallery():
    rng = np.random.default_rng(0)

    base = rng.normal(size=512)

    class Wide(Embedder):
        dim = 512

        def embed(self, frame, boxes):  # one look, a little noise
            return (base + 0.05 * rng.normal(size=(len(boxes), 512))).astype(np.float32)

    config = GivenObjectsConfig(gallery_size=16)
    tracker = GivenObjectTracker(Scripted(), config, embedder=Wide())
    (state,) = start(tracker, Start(walk(20), "person"))
    frames = [dets((20 + k, 50, 50 + k, 130, 0.9, 0)) for k in range(1, 30)]
    results = run(tracker, frames, [state])
    final = results[-1][0].state
    assert len(final.gallery) == 8  # 8 KiB of float16 at 512 values
    assert len(final.encode()) <= MAX_OBJECT_STATE_BYTES


def _tampered(state: GivenObject, **changes) -> str:
    envelope = json.loads(state.encode())
    envelope["payload"].update(changes)
    return resign(envelope)


@pytest.mark.parametrize("changes, words", [
    ({"label": "unicorn"}, "not one of"),
    ({"label": 5}, "string"),
    ({"lost": 9}, "lost"),
    ({"score": 2}, "score"),
    ({"extra": 1}, "unknown fields"),
    ({"box": ndarray_spec([5, 5, 1, 1])}, "x1 < x2"),
    ({"kalman": ndarray_spec([1e9] * 20)}, "no frame"),
    ({"kalman": ndarray_spec([50, 50, 0.5, 80, 0, 0, 0, 0] + [-1] * 12)}, "positive definite"),
    ({"gallery": ndarray_spec(np.ones((2, 4)), "<f4")}, "float16"),
    ({"gallery": ndarray_spec(np.ones((2, 4)), "<f2")}, "unit length"),
    ({"gallery": ndarray_spec(np.zeros((17, 4)), "<f2")}, "more than"),
    ({"gallery": ndarray_spec(np.zeros((1, 4)), "<f2"), "embedder": ""}, "embedder"),
    ({"margin": ndarray_spec([0, 0, 2, 0])}, "margin"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_tampered_states_are_refused(changes, words):
    (state,) = start(GivenObjectTracker(Scripted()), Start(walk(20), "person"))
    state = state.with_(step=3, lost=1)
    with pytest.raises(StateError, match=words):
        GivenObject.decode(_tampered(state, **changes), CLASSES)
    envelope = json.loads(state.encode())
    envelope["payload"]["score"] = 0.5  # edited without re-signing
    with pytest.raises(StateError, match="digest"):
        GivenObject.decode(json.dumps(envelope), CLASSES)


def test_a_long_coast_keeps_the_state_readable():
    """An aspect velocity can drive a coasting box's aspect below zero (the filter learns it
    slowly, but a state may carry any speed); every state the tracker writes must be one it
    reads back."""
    config = GivenObjectsConfig(track_buffer=1000)
    tracker = GivenObjectTracker(Scripted(), config)
    (state,) = start(tracker, Start(walk(100, w=60), "person"))
    kalman = state.kalman.copy()
    kalman[6] = -0.01  # aspect shrinking by 0.01 a frame: below zero after 75 frames
    results = run(tracker, [Detections.empty()] * 300, [state.with_(kalman=kalman)])
    coasted = GivenObject.decode(results[-1][0].state.encode(), CLASSES)
    assert coasted.lost == 300 and coasted.kalman[2] == pytest.approx(1e-3)  # held above 0
    x1, y1, x2, y2 = results[-1][0].box
    assert 0 <= x1 < x2 <= 320 and 0 <= y1 < y2 <= 240
