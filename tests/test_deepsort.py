"""DeepSORT: lifecycle, appearance, gating and cascade; exact restore; untrusted state."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autotrack.detections import Detections
from autotrack.errors import StateError
from autotrack.export.mot import read_mot
from autotrack.geometry import iou_matrix
from autotrack.state import MAX_STATE_BYTES
from autotrack.synthetic import SceneConfig, make_scene
from autotrack.trackers.bytetrack import ByteTrack
from autotrack.trackers.deepsort import DeepSort, DeepSortConfig
from helpers import edit_array, resign

DIM = 32


def unit(*vectors):
    v = np.sum(vectors, axis=0) if len(vectors) > 1 else np.asarray(vectors[0], dtype=float)
    return v / np.linalg.norm(v)


def identity(seed, dim=DIM):
    return unit(np.random.default_rng(seed).normal(size=dim))


def frame(*objects):
    """Detections and embeddings from (box, embedding) or (box, embedding, score) tuples."""
    if not objects:
        return Detections.empty(), np.zeros((0, DIM))
    boxes = np.array([o[0] for o in objects], dtype=float)
    scores = np.array([o[2] if len(o) > 2 else 0.9 for o in objects])
    embeddings = np.array([o[1] for o in objects])
    return Detections(boxes, scores, np.zeros(len(objects), dtype=np.int64)), embeddings


def box_at(x, y=100.0, w=40.0, h=100.0):
    return (x, y, x + w, y + h)


def step(tracker, *objects):
    detections, embeddings = frame(*objects)
    return tracker.update(detections, embeddings)


# ------------------------------------------------------------------ lifecycle
def test_track_is_confirmed_after_n_init_hits_with_its_earlier_frames():
    tracker = DeepSort(DeepSortConfig(report_detection_boxes=True))
    a = identity(1)
    boxes = [box_at(100 + 3 * f) for f in range(4)]
    assert len(step(tracker, (boxes[0], a))) == 0  # tentative
    assert len(step(tracker, (boxes[1], a))) == 0
    out = step(tracker, (boxes[2], a))
    assert out.track_ids.tolist() == [1]
    assert np.allclose(out.boxes[0], boxes[2])
    previous = out.first_seen_previous_frame  # frame 2, holding frame 1
    assert previous.track_ids.tolist() == [1] and np.allclose(previous.boxes[0], boxes[1])
    assert np.allclose(previous.first_seen_previous_frame.boxes[0], boxes[0])
    assert previous.first_seen_previous_frame.first_seen_previous_frame is None
    out = step(tracker, (boxes[3], a))
    assert out.track_ids.tolist() == [1] and out.first_seen_previous_frame is None

    # Kalman boxes: the earlier frames come as the filter reported them then.
    kalman = DeepSort()
    outs = [step(kalman, (b, a)) for b in boxes[:3]]
    assert np.allclose(outs[2].first_seen_previous_frame.first_seen_previous_frame.boxes[0],
                       boxes[0])  # a track's first estimate is its detection
    assert not np.allclose(outs[2].boxes[0], boxes[2])


def test_n_init_one_confirms_on_the_second_hit_as_the_reference_does():
    tracker = DeepSort(DeepSortConfig(n_init=1))
    a = identity(1)
    assert len(step(tracker, (box_at(100), a))) == 0
    out = step(tracker, (box_at(101), a))
    assert out.track_ids.tolist() == [1]
    assert out.first_seen_previous_frame.first_seen_previous_frame is None


def test_tentative_track_dies_at_its_first_miss():
    tracker = DeepSort()
    a = identity(1)
    step(tracker, (box_at(100), a))
    step(tracker, (box_at(100), a))
    step(tracker)  # missed while tentative: deleted
    assert len(tracker._table) == 0
    for _ in range(3):
        out = step(tracker, (box_at(100), a))
    assert out.track_ids.tolist() == [2]


@pytest.mark.parametrize("missed, same_id", [(4, True), (5, False)])
def test_confirmed_track_is_deleted_after_max_age_misses(missed, same_id):
    """With max_age 5 the cascade looks back 5 frames: a track can be re-found after 4
    missed frames; on the 6th frame without a match it is deleted."""
    tracker = DeepSort(DeepSortConfig(max_age=5))
    a = identity(1)
    for _ in range(3):
        step(tracker, (box_at(100), a))
    for _ in range(missed):
        assert len(step(tracker)) == 0
    assert len(tracker._table) == 1  # still remembered
    out = step(tracker, (box_at(100), a))
    assert (out.track_ids.tolist() == [1]) is same_id
    if not same_id:
        assert tracker._table[:, 0].tolist() == [2]


def test_new_track_confidence_gates_births_but_not_matches():
    """A box above min_confidence but below new_track_confidence extends a track but never
    starts one (ByteTrack's new_track_thresh); at the default 0 it starts one (the paper)."""
    a, post = identity(1), identity(2)
    gated = DeepSort(DeepSortConfig(min_confidence=0.5, new_track_confidence=0.6))
    paper = DeepSort(DeepSortConfig(min_confidence=0.5))
    for _ in range(5):  # a steady false positive the detector half-believes in
        assert len(step(gated, (box_at(400), post, 0.55))) == 0
        out = step(paper, (box_at(400), post, 0.55))
    assert out.track_ids.tolist() == [1] and len(gated._table) == 0
    for f in range(3):
        out = step(gated, (box_at(100 + 3 * f), a, 0.9))
    assert out.track_ids.tolist() == [1]
    for f in range(3, 8):  # occluded: scored 0.55, still the same track
        out = step(gated, (box_at(100 + 3 * f), a, 0.55), (box_at(400), post, 0.55))
        assert out.track_ids.tolist() == [1]
    assert gated.next_id == 2


def test_annotate_options_give_both_trackers_the_same_birth_and_memory(shared_data):
    """`autotrack annotate` maps --conf and --track-buffer to DeepSORT so that they mean what
    they mean for ByteTrack: births at --conf + 0.1, and a lost object re-found after up to
    max_time_lost missed frames (at 25 frames/s: 25), not one more."""
    from autotrack.tracking_options import TrackingOptions

    options = TrackingOptions(tracker_name="deepsort")
    config = options.tracker(25.0).config
    assert config.min_confidence == 0.5 and config.new_track_confidence == pytest.approx(0.6)
    buffer = TrackingOptions().tracker(25.0).config.max_time_lost
    for missed, same_id in [(buffer, True), (buffer + 1, False)]:
        deepsort = DeepSort(config)
        bytetrack = TrackingOptions().tracker(25.0)
        a = identity(1)
        for f in range(3):
            step(deepsort, (box_at(100), a))
            bytetrack.update(frame((box_at(100), a))[0])
        for _ in range(missed):
            step(deepsort)
            bytetrack.update(Detections.empty())
        back = frame((box_at(100), a))
        assert (step(deepsort, (box_at(100), a)).track_ids.tolist() == [1]) is same_id
        assert (bytetrack.update(back[0]).track_ids.tolist() == [1]) is same_id


# ------------------------------------------------------------------ association
def _walk_with_occlusion(tracker, appearance_after, visible=10, hidden=6, speed=8.0):
    a = identity(1)
    for f in range(visible):
        step(tracker, (box_at(100 + speed * f), a))
    for _ in range(hidden):
        step(tracker)
    last_seen = box_at(100 + speed * (visible - 1))
    back = box_at(100 + speed * (visible + hidden))
    return last_seen, back, step(tracker, (back, appearance_after))


def test_appearance_re_identifies_a_track_after_an_occlusion():
    a = identity(1)
    last_seen, back, out = _walk_with_occlusion(DeepSort(), a)
    assert iou_matrix(np.array([last_seen]), np.array([back]))[0, 0] == 0  # IoU cannot
    assert out.track_ids.tolist() == [1]
    # The same box with another person's appearance is not that track.
    _, _, out = _walk_with_occlusion(DeepSort(), identity(2))
    assert len(out) == 0


def test_mahalanobis_gate_rejects_far_jumps():
    a = identity(1)
    for jump, matched in [(6.0, True), (300.0, False)]:
        tracker = DeepSort()
        for _ in range(5):
            step(tracker, (box_at(100), a))
        step(tracker)  # missed once: only the appearance cascade can match it now
        out = step(tracker, (box_at(100 + jump), a))
        assert (out.track_ids.tolist() == [1]) is matched, jump
    # The gate also holds in the IoU stage's absence: far box, same look, new track.
    assert tracker._table[:, 0].tolist() == [1, 2]


def test_cascade_gives_recently_seen_tracks_priority():
    """A detection admissible for two tracks goes to the one seen last frame, even though
    the one lost for a few frames looks more like it (a global matching would pick it)."""
    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(rng.normal(size=(DIM, 3)))
    d, u, v = basis.T
    look_a = unit(0.85 * d + np.sqrt(1 - 0.85**2) * u)  # cosine distance 0.15 to d
    look_b = unit(0.95 * d + np.sqrt(1 - 0.95**2) * v)  # cosine distance 0.05 to d
    tracker = DeepSort()
    for _ in range(3):
        step(tracker, (box_at(100), look_a), (box_at(110), look_b))
    for _ in range(3):  # b is not detected: lost for 3 frames
        step(tracker, (box_at(100), look_a))
    out = step(tracker, (box_at(105), d))
    assert out.track_ids.tolist() == [1]
    # With a only (no cascade question), b would have taken it.
    tracker = DeepSort()
    for _ in range(3):
        step(tracker, (box_at(100), look_a), (box_at(110), look_b))
    for _ in range(3):
        step(tracker)
    assert step(tracker, (box_at(105), d)).track_ids.tolist() == [2]


def test_iou_stage_keeps_a_track_whose_look_changes_for_one_frame():
    a = identity(1)
    tracker = DeepSort()
    for f in range(5):
        step(tracker, (box_at(100 + f), a))
    # Appearance fails (another look), and the track was seen last frame: IoU matches it.
    assert step(tracker, (box_at(105), identity(9))).track_ids.tolist() == [1]


def test_motion_weight_mixes_costs_but_both_gates_hold():
    tracker = DeepSort(DeepSortConfig(motion_weight=1.0))
    a = identity(1)
    for _ in range(5):
        step(tracker, (box_at(100), a))
    step(tracker)
    assert len(step(tracker, (box_at(101), identity(2)))) == 0  # appearance gate
    tracker = DeepSort(DeepSortConfig(motion_weight=0.5))
    for _ in range(5):
        step(tracker, (box_at(100), a))
    step(tracker)
    assert step(tracker, (box_at(101), a)).track_ids.tolist() == [1]


def test_gallery_keeps_the_last_nn_budget_embeddings_as_float16():
    tracker = DeepSort(DeepSortConfig(nn_budget=5))
    looks = [unit(identity(1) + 0.1 * identity(100 + f)) for f in range(12)]
    for look in looks:
        step(tracker, (box_at(100), look))
    assert tracker._gallery.dtype == np.float16
    assert tracker._table[0, 6] == 5
    expected = np.array(looks[-5:]).astype(np.float32)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.array_equal(tracker._gallery[0], expected.astype(np.float16))


def test_low_confidence_and_invalid_boxes_are_ignored_and_never_embedded():
    class CountingEmbedder:
        name, dim, input_hw = "counting", DIM, (256, 128)

        def __init__(self):
            self.boxes = 0

        def embed(self, frame_bgr, boxes):
            self.boxes += len(boxes)
            return np.array([identity(int(b[0])) for b in boxes]).reshape(-1, DIM)

    embedder = CountingEmbedder()
    tracker = DeepSort(DeepSortConfig(min_confidence=0.5), embedder=embedder)
    image = np.zeros((480, 640, 3), dtype=np.uint8)
    detections = Detections(
        np.array([box_at(10), box_at(200), (5, 5, 5, 50), (np.nan, 0, 1, 1)]),
        np.array([0.9, 0.3, 0.9, 0.9]), np.zeros(4, dtype=np.int64))
    for _ in range(3):
        out = tracker.update(detections, frame=image)
    assert out.track_ids.tolist() == [1] and tracker.next_id == 2
    assert embedder.boxes == 3  # one box a frame: only the one the tracker uses
    assert tracker.embedding_seconds > 0


def test_embeddings_must_come_from_somewhere_and_fit():
    tracker = DeepSort()
    detections, embeddings = frame((box_at(10), identity(1)))
    assert len(tracker.update(Detections.empty())) == 0  # nothing to embed: fine
    with pytest.raises(ValueError, match="needs appearance"):
        tracker.update(detections)
    with pytest.raises(ValueError, match="must be"):
        tracker.update(detections, np.zeros((2, DIM)))
    tracker.update(detections, embeddings)
    with pytest.raises(ValueError, match="this tracker's have 32"):
        tracker.update(detections, np.ones((1, 8)))
    assert tracker.frame_id == 2  # refused frames do not count


def test_non_finite_embeddings_carry_no_appearance():
    tracker = DeepSort()
    for f in range(4):
        out = step(tracker, (box_at(10 + f), np.full(DIM, np.nan)))
    assert out.track_ids.tolist() == [1]  # by IoU alone
    assert not tracker._gallery[0, :4].any()
    assert DeepSort.from_state(tracker.to_state()).to_state() == tracker.to_state()


def test_frame_and_precomputed_embeddings_give_the_same_tracks():
    class ColourEmbedder:
        name, dim, input_hw = "colour", 3, (8, 4)

        def embed(self, frame_bgr, boxes):
            return np.array([frame_bgr[int(b[1]) + 5, int(b[0]) + 5] + 1.0 for b in boxes],
                            dtype=np.float32).reshape(-1, 3)

    embedder = ColourEmbedder()
    rng = np.random.default_rng(3)
    a, b = DeepSort(embedder=embedder), DeepSort()
    for f in range(8):
        image = np.zeros((300, 400, 3), dtype=np.uint8)
        boxes = np.array([box_at(20 + 4 * f, 20), box_at(250 - 4 * f, 150)])
        for (x1, y1, x2, y2), colour in zip(boxes.astype(int), [(255, 0, 0), (0, 0, 255)]):
            image[y1:y2, x1:x2] = colour
        detections = Detections(boxes + rng.normal(0, 1, boxes.shape), np.full(2, 0.9),
                                np.zeros(2, dtype=np.int64))
        x, y = a.update(detections, frame=image), b.update(detections,
                                                           embedder.embed(image, detections.boxes))
        assert x.track_ids.tolist() == y.track_ids.tolist()
        assert np.array_equal(x.boxes, y.boxes)
    assert a.to_state() != b.to_state()  # the first records its embedder's name


# ------------------------------------------------------------------ exact restore
def _identity_embeddings(truth_ids, rng, noise=0.15, dim=DIM):
    """Per detection: its object's look plus noise; false positives look random."""
    looks = np.array([identity(1000 + t, dim) if t >= 0 else rng.normal(size=dim)
                      for t in truth_ids]).reshape(-1, dim)
    return looks + rng.normal(0, noise / np.sqrt(dim), looks.shape)


def _synthetic(objects, frames=120):
    scene = make_scene(SceneConfig(objects=objects, frames=frames, seed=objects))
    rng = np.random.default_rng(objects)
    return [(d, _identity_embeddings(t, rng)) for d, t in zip(scene.detections, scene.truth_ids)]


def _tud(shared_data, name):
    truth = read_mot(shared_data / "mot" / name / "gt.txt")
    n_frames = max(int(t.frames.max()) for t in truth.values()) + 1
    rng = np.random.default_rng(4)
    rows = [[] for _ in range(n_frames)]
    for track_id, track in truth.items():
        for f, box in zip(track.frames, track.boxes):
            if rng.random() < 0.08:
                continue
            size = box[2:] - box[:2]
            noisy = box + rng.normal(0, 0.03, 4) * np.tile(size, 2)
            rows[int(f)].append((*noisy, rng.uniform(0.3, 0.95), track_id))
    out = []
    for r in rows:
        a = np.array(r, dtype=float).reshape(-1, 6)
        d = Detections(a[:, :4], a[:, 4], np.zeros(len(a), dtype=np.int64))
        out.append((d, _identity_embeddings(a[:, 5].astype(int), rng)))
    return out


@pytest.fixture(scope="module")
def vtest_sequence(shared_data: Path):
    """Real input: YOLOX-Nano people and person-reid-0248 embeddings, 60 frames of vtest."""
    import cv2

    from autotrack.detectors import filter_detections, load_detector
    from autotrack.reid import OnnxReidEmbedder

    models = shared_data / "models"
    detector = load_detector(models / "yolox_nano_416x416.onnx")
    embedder = OnnxReidEmbedder(models / "person-reidentification-retail-0248.onnx")
    capture = cv2.VideoCapture(str(shared_data / "videos" / "vtest.avi"))
    sequence = []
    try:
        for _ in range(60):
            ok, image = capture.read()
            assert ok
            d = filter_detections(detector.detect(image), np.array([0]))
            sequence.append((d, embedder.embed(image, d.boxes)))
    finally:
        capture.release()
    return sequence


def _same(a, b):
    while a is not None or b is not None:
        assert a is not None and b is not None
        assert a.track_ids.tolist() == b.track_ids.tolist()
        assert np.array_equal(a.boxes, b.boxes)  # bit for bit
        assert np.array_equal(a.scores, b.scores)
        assert np.array_equal(a.class_ids, b.class_ids)
        a, b = a.first_seen_previous_frame, b.first_seen_previous_frame


@pytest.mark.parametrize("source", ["synthetic-20", "synthetic-100", "TUD-Stadtmitte", "vtest"])
def test_restore_at_random_frames_reproduces_uninterrupted_run(source, shared_data, request):
    if source == "vtest":
        sequence = request.getfixturevalue("vtest_sequence")
        config = DeepSortConfig(max_age=10)
    elif source.startswith("synthetic"):
        sequence = _synthetic(int(source.split("-")[1]))
        config = DeepSortConfig(nn_budget=20)  # galleries fill up and roll over
    else:
        sequence = _tud(shared_data, source)
        config = DeepSortConfig(min_confidence=0.4, new_track_confidence=0.6)
    reference_tracker = DeepSort(config)
    reference = [reference_tracker.update(d, e) for d, e in sequence]
    rng = np.random.default_rng(7)
    cuts = set(rng.choice(np.arange(1, len(sequence) - 1), size=5, replace=False).tolist())
    tracker = DeepSort(config)
    for index, (d, e) in enumerate(sequence):
        if index in cuts:
            tracker = DeepSort.from_state(tracker.to_state())
        _same(tracker.update(d, e), reference[index])
    assert sum(len(o) for o in reference) > 0
    assert tracker.to_state() == reference_tracker.to_state()


def test_state_at_every_frame_round_trips_exactly():
    tracker = DeepSort(DeepSortConfig(nn_budget=4, n_init=4))
    for d, e in _synthetic(15, frames=50):
        tracker.update(d, e)
        text = tracker.to_state()
        restored = DeepSort.from_state(text)
        assert restored.to_state() == text
        assert np.array_equal(restored._gallery, tracker._gallery)
        assert np.array_equal(restored._table, tracker._table)


def test_fifty_tracks_with_full_galleries_fit_the_state_limit():
    rng = np.random.default_rng(0)
    looks = rng.normal(size=(50, 256))
    grid = np.array([(60.0 * (i % 10), 130.0 * (i // 10)) for i in range(50)])
    boxes = np.concatenate([grid, grid + (40.0, 100.0)], axis=1)
    detections = Detections(boxes, np.full(50, 0.9), np.zeros(50, dtype=np.int64))
    tracker = DeepSort(DeepSortConfig(nn_budget=100))
    for _ in range(101):
        out = tracker.update(detections, looks + rng.normal(0, 0.05, looks.shape))
    assert len(out) == 50 and (tracker._table[:, 6] == 100).all()
    text = tracker.to_state()
    print(f"\n50 tracks x 100 x 256-d float16 galleries: state {len(text):,} bytes "
          f"({len(text) / MAX_STATE_BYTES:.0%} of the {MAX_STATE_BYTES:,}-byte limit)")
    assert len(text) < MAX_STATE_BYTES / 4  # about 3.4 MB
    restored = DeepSort.from_state(text)
    assert np.array_equal(restored._gallery, tracker._gallery)


# ------------------------------------------------------------------ untrusted state
@pytest.fixture(scope="module")
def saved_state() -> str:
    tracker = DeepSort(DeepSortConfig(nn_budget=10))
    for d, e in _synthetic(8, frames=39):
        tracker.update(d, e)
    newcomer = Detections(np.vstack([d.boxes, [5000, 5000, 5040, 5100]]),
                          np.append(d.scores, 0.9), np.append(d.class_ids, 0))
    tracker.update(newcomer, np.vstack([e, identity(99)]))  # frame 40, with a tentative track
    assert (tracker._table[:, 1] == 0).any() and (tracker._table[:, 1] == 1).any()
    return tracker.to_state()


def test_state_is_plain_json_with_float16_galleries(saved_state):
    envelope = json.loads(saved_state)
    assert envelope["kind"] == "deepsort" and envelope["version"] == 1
    assert envelope["payload"]["tracks"]["gallery"]["__ndarray__"]["dtype"] == "<f2"


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s[: len(s) // 2], "not valid JSON"),
    (lambda s: s.replace('"kind":"deepsort"', '"kind":"bytetrack"'), "is for 'bytetrack'"),
    (lambda s: s.replace('"version":1', '"version":2'), "not supported"),
    (lambda s: s.replace('"frame_id":40', '"frame_id":41'), "digest does not match"),
])
def test_tampered_state_refused(saved_state, mutate, message):
    with pytest.raises(StateError, match=message):
        DeepSort.from_state(mutate(saved_state))


def test_other_trackers_state_and_oversized_state_refused():
    with pytest.raises(StateError, match="is for 'bytetrack'"):
        DeepSort.from_state(ByteTrack().to_state())
    with pytest.raises(StateError, match="over the"):
        DeepSort.from_state('{"pad": "' + "x" * MAX_STATE_BYTES + '"}')


@pytest.mark.parametrize("key, fn, message", [
    ("ids", lambda a: a[::-1].copy(), "not increasing"),
    ("ids", lambda a: a + 10_000, "not increasing"),
    ("end_frame", lambda a: a - 1000, "inconsistent"),
    ("class_id", lambda a: a - 5, "inconsistent"),
    ("early_class_ids", lambda a: a - 5, "early"),
    ("gallery_counts", lambda a: a + 1, "gallery sizes|does not hold"),
    ("gallery", lambda a: a.astype(np.float32), "float16"),
    ("gallery", lambda a: a * np.float16(3), "unit length"),
    ("gallery", lambda a: a[:, :5].copy(), "shape"),
    ("kalman", lambda a: a * -1, "positive definite"),
    ("score", lambda a: a + 5, "inconsistent"),
    ("early_scores", lambda a: a + 5, "early"),
    ("confirmed", lambda a: ~a, "history does not allow"),
])
def test_well_signed_but_impossible_state_refused(saved_state, key, fn, message):
    envelope = json.loads(saved_state)
    edit_array(envelope, key, fn)
    with pytest.raises(StateError, match=message):
        DeepSort.from_state(resign(envelope))


@pytest.mark.parametrize("edit, message", [
    (lambda e: e["payload"]["config"].update(nn_budget=10**6), "invalid"),
    (lambda e: e["payload"]["config"].update(evil=1), "unknown fields"),
    (lambda e: e["payload"].update(feature_dim=8), "shape"),
    (lambda e: e["payload"].update(embedder=["x"]), "embedder"),
    (lambda e: e["payload"].update(next_id=0), "next_id"),
])
def test_malformed_payload_refused(saved_state, edit, message):
    envelope = json.loads(saved_state)
    edit(envelope)
    with pytest.raises(StateError, match=message):
        DeepSort.from_state(resign(envelope))


def test_state_saved_before_new_track_confidence_restores_with_the_papers_rule(saved_state):
    envelope = json.loads(saved_state)
    del envelope["payload"]["config"]["new_track_confidence"]
    restored = DeepSort.from_state(resign(envelope))
    assert restored.config == DeepSort.from_state(saved_state).config
    assert restored.config.new_track_confidence == 0.0


def test_state_is_bound_to_its_embedder():
    class Named:
        dim, input_hw = DIM, (256, 128)

        def __init__(self, name):
            self.name = name

        def embed(self, frame_bgr, boxes):
            return np.tile(identity(1), (len(boxes), 1))

    image = np.zeros((400, 400, 3), dtype=np.uint8)
    tracker = DeepSort(embedder=Named("model-a"))
    tracker.update(Detections(np.array([box_at(10)]), np.array([0.9]), np.array([0])),
                   frame=image)
    text = tracker.to_state()
    assert DeepSort.from_state(text, embedder=Named("model-a")).embedder_name == "model-a"
    assert DeepSort.from_state(text).embedder_name == "model-a"
    with pytest.raises(StateError, match="made with embedder 'model-a', not 'model-b'"):
        DeepSort.from_state(text, embedder=Named("model-b"))
    other = Named("model-a")
    other.dim = 8
    with pytest.raises(StateError, match="32-value embeddings"):
        DeepSort.from_state(text, embedder=other)
