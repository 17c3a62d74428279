"""ByteTrack: behaviour of each stage, exact restore from state, agreement with ultralytics."""

import numpy as np
import pytest

from autotrack.detections import Detections
from autotrack.export.mot import read_mot
from autotrack.synthetic import SceneConfig, make_scene
from autotrack.trackers.bytetrack import ByteTrack, ByteTrackConfig


def dets(*rows):
    """Detections from (x1, y1, x2, y2, score) rows."""
    a = np.array(rows, dtype=float).reshape(-1, 5)
    return Detections(a[:, :4], a[:, 4], np.zeros(len(a), dtype=np.int64))


def moving_box(frame, x0=100.0, speed=5.0):
    return (x0 + speed * frame, 100.0, x0 + speed * frame + 40, 200.0)


def test_first_frame_tracks_are_confirmed_at_once_later_ones_after_two_frames():
    tracker = ByteTrack()
    out = tracker.update(dets((*moving_box(0), 0.9)))
    assert out.track_ids.tolist() == [1]
    out = tracker.update(dets((*moving_box(1), 0.9), (400, 400, 440, 500, 0.9)))
    assert out.track_ids.tolist() == [1]  # the newcomer is unconfirmed
    out = tracker.update(dets((*moving_box(2), 0.9), (401, 400, 441, 500, 0.9)))
    assert sorted(out.track_ids.tolist()) == [1, 2]


def test_low_score_box_keeps_track_alive_in_second_stage():
    tracker = ByteTrack()
    for f in range(5):
        tracker.update(dets((*moving_box(f), 0.9)))
    out = tracker.update(dets((*moving_box(5), 0.3)))  # occluded: low score
    assert out.track_ids.tolist() == [1]
    # Without the low-score box the track would have been lost this frame.
    tracker2 = ByteTrack(ByteTrackConfig(track_low_thresh=0.35))
    for f in range(5):
        tracker2.update(dets((*moving_box(f), 0.9)))
    assert len(tracker2.update(dets((*moving_box(5), 0.3)))) == 0


def test_low_score_box_never_starts_a_track():
    tracker = ByteTrack()
    for _ in range(5):
        out = tracker.update(dets((0, 0, 50, 100, 0.4)))
    assert len(out) == 0 and tracker.next_id == 1


def test_lost_track_is_refound_within_buffer_and_replaced_after_it():
    config = ByteTrackConfig(track_buffer=10)
    tracker = ByteTrack(config)
    for f in range(5):
        tracker.update(dets((*moving_box(f), 0.9)))
    for _ in range(5):  # gone for 5 frames: within the buffer
        assert len(tracker.update(Detections.empty())) == 0
    out = tracker.update(dets((*moving_box(10), 0.9)))
    assert out.track_ids.tolist() == [1]

    tracker = ByteTrack(config)
    for f in range(5):
        tracker.update(dets((*moving_box(f), 0.9)))
    for _ in range(12):  # longer than the buffer: the track is removed
        tracker.update(Detections.empty())
    tracker.update(dets((*moving_box(17), 0.9)))
    out = tracker.update(dets((*moving_box(18), 0.9)))
    assert out.track_ids.tolist() == [2]


def test_buffer_scales_with_frame_rate():
    assert ByteTrackConfig(track_buffer=30, frame_rate=10).max_time_lost == 10
    assert ByteTrackConfig(track_buffer=30, frame_rate=60).max_time_lost == 60


def test_ids_are_per_tracker_instance():
    a, b = ByteTrack(), ByteTrack()
    a.update(dets((0, 0, 10, 10, 0.9)))
    a.update(dets((0, 0, 10, 10, 0.9), (50, 50, 60, 60, 0.9)))
    assert b.update(dets((0, 0, 10, 10, 0.9))).track_ids.tolist() == [1]


def test_degenerate_and_non_finite_boxes_are_ignored():
    tracker = ByteTrack()
    out = tracker.update(dets(
        (10, 10, 10, 50, 0.9),  # zero width
        (np.nan, 0, 10, 10, 0.9),
        (0, 0, np.inf, 10, 0.9),
        (0, 0, 10, 10, np.nan),
        (20, 20, 60, 120, 0.9),
    ))
    assert len(out) == 1
    assert np.isfinite(out.boxes).all()


def _passer_by_scene():
    """A tall person stands still (frames 0-9), is hidden (10-19) and comes back (20-23). From
    frame 10 a shorter, farther person walks out from behind them, half hidden at first
    (score 0.3, frames 10-15, inside the tall one's box: IoU 0.56), then in full view."""
    frames = []
    for f in range(24):
        rows = [(300.0, 100.0, 380.0, 300.0, 0.9)] if f < 10 or f >= 20 else []
        if f >= 10:
            x = 310.0 + 10 * (f - 10)
            rows.append((x, 150.0, x + 60, 300.0, 0.3 if f < 16 else 0.9))
        frames.append(dets(*rows))
    return frames


def test_second_stage_size_gate_keeps_a_hidden_track_off_a_shorter_passer_by():
    """The reference (the online doors) lets the hidden person's track take the passer-by's
    low-score box and follow them away, so the person comes back under a new ID; with
    second_max_shrink a box 1.33 times shorter cannot extend the track, which waits lost
    and re-finds the person."""
    reference = _run(ByteTrack(), _passer_by_scene())
    assert ByteTrackConfig().second_max_shrink == 0.0
    assert reference[12].track_ids.tolist() == [1]  # track 1 now on the passer-by
    assert reference[18].boxes[0, 0] > 380
    assert reference[21].track_ids.tolist() == [1, 2]  # the person back as track 2
    assert reference[21].boxes[1, 0] == pytest.approx(300)
    gated = _run(ByteTrack(ByteTrackConfig(second_max_shrink=1.2)), _passer_by_scene())
    assert all(len(out) == 0 for out in gated[10:16])  # lost, not dragged along
    assert gated[21].track_ids.tolist() == [2, 1]  # the person re-found as track 1
    assert gated[21].boxes[1, 0] == pytest.approx(300)
    # A box just within the factor still extends the track (the reference's second stage).
    tracker = ByteTrack(ByteTrackConfig(second_max_shrink=1.2))
    for _ in range(5):
        tracker.update(dets((300, 100, 380, 300, 0.9)))
    assert tracker.update(dets((300, 125, 380, 300, 0.3))).track_ids.tolist() == [1]  # 1.14


def test_invalid_config_is_refused():
    with pytest.raises(ValueError):
        ByteTrackConfig(track_high_thresh=1.5)
    with pytest.raises(ValueError):
        ByteTrackConfig(track_low_thresh=0.6, track_high_thresh=0.5)
    with pytest.raises(ValueError):
        ByteTrackConfig(frame_rate=0)
    for bad in (0.5, -1.0, 1e7, float("nan")):
        with pytest.raises(ValueError):
            ByteTrackConfig(second_max_shrink=bad)
    again = ByteTrack.from_state(ByteTrack(ByteTrackConfig(second_max_shrink=1.2)).to_state())
    assert again.config.second_max_shrink == 1.2


def _run(tracker, detections):
    return [tracker.update(d) for d in detections]


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.track_ids.tolist() == y.track_ids.tolist()
        assert np.array_equal(x.boxes, y.boxes)  # bit for bit
        assert np.array_equal(x.scores, y.scores)
        assert np.array_equal(x.class_ids, y.class_ids)


def _tud_detections(shared_data, name, seed=0):
    """Realistic detections: ground truth of a real sequence, jittered, with misses,
    low-score (occluded) boxes and false positives, IDs removed."""
    truth = read_mot(shared_data / "mot" / name / "gt.txt")
    frames = max(int(t.frames.max()) for t in truth.values()) + 1
    rng = np.random.default_rng(seed)
    per_frame = [[] for _ in range(frames)]
    for track in truth.values():
        for frame, box in zip(track.frames, track.boxes):
            if rng.random() < 0.05:
                continue
            size = box[2:] - box[:2]
            noisy = box + rng.normal(0, 0.03, 4) * np.tile(size, 2)
            score = rng.uniform(0.55, 0.95) if rng.random() > 0.15 else rng.uniform(0.12, 0.5)
            per_frame[int(frame)].append((*noisy, score))
        for frame in range(frames):
            if rng.random() < 0.02:
                x, y = rng.uniform(0, 600), rng.uniform(0, 400)
                per_frame[frame].append((x, y, x + 40, y + 100, rng.uniform(0.1, 0.7)))
    return [dets(*rows) if rows else Detections.empty() for rows in per_frame]


@pytest.mark.parametrize("source", ["synthetic-20", "synthetic-200", "TUD-Stadtmitte"])
def test_restore_at_random_frames_reproduces_uninterrupted_run(source, shared_data):
    if source.startswith("synthetic"):
        n = int(source.split("-")[1])
        detections = make_scene(SceneConfig(objects=n, frames=120, seed=n)).detections
    else:
        detections = _tud_detections(shared_data, source)
    reference = _run(ByteTrack(), detections)
    rng = np.random.default_rng(7)
    cuts = sorted(rng.choice(np.arange(1, len(detections) - 1), size=4, replace=False))
    tracker = ByteTrack()
    outputs = []
    for frame, d in enumerate(detections):
        if frame in cuts:
            tracker = ByteTrack.from_state(tracker.to_state())
        outputs.append(tracker.update(d))
    _assert_same(outputs, reference)
    assert sum(len(o) for o in reference) > 0


def test_state_at_every_frame_round_trips_exactly():
    detections = make_scene(SceneConfig(objects=15, frames=60, seed=2)).detections
    tracker = ByteTrack()
    for d in detections:
        tracker.update(d)
        restored = ByteTrack.from_state(tracker.to_state())
        assert restored.to_state() == tracker.to_state()


@pytest.mark.parametrize("source", ["synthetic-20", "synthetic-200", "TUD-Campus", "TUD-Stadtmitte"])
def test_agrees_with_ultralytics_bytetracker(source, shared_data):
    """Same detections, same settings: the same associations, box for box."""
    pytest.importorskip("ultralytics")
    from autotrack import peers

    if source.startswith("synthetic"):
        n = int(source.split("-")[1])
        detections = make_scene(SceneConfig(objects=n, frames=100, seed=n)).detections
    else:
        detections = _tud_detections(shared_data, source, seed=1)
    config = ByteTrackConfig()
    ours = _run(ByteTrack(config), detections)
    theirs_tracker = peers.ultralytics_bytetrack(config)
    theirs = [peers.from_ultralytics(theirs_tracker.update(peers.ultralytics_results(d)))
              for d in detections]
    result = peers.agreement(ours, theirs)
    assert result.rate == 1.0, result
    assert result.max_box_difference < 0.01  # ultralytics reports float32 boxes


def test_reports_kalman_or_detection_boxes_and_first_frame_of_late_confirmed_tracks():
    kalman, detection = ByteTrack(), ByteTrack(ByteTrackConfig(report_detection_boxes=True))
    kalman.update(Detections.empty())
    detection.update(Detections.empty())
    boxes = [(100.0, 100.0, 140.0, 200.0), (104.0, 101.0, 145.0, 203.0)]
    for box in boxes[:1]:
        assert len(kalman.update(dets((*box, 0.9)))) == 0  # born, unconfirmed
        detection.update(dets((*box, 0.9)))
    a = kalman.update(dets((*boxes[1], 0.9)))
    b = detection.update(dets((*boxes[1], 0.9)))
    assert a.track_ids.tolist() == b.track_ids.tolist() == [1]
    assert np.allclose(b.boxes[0], boxes[1])  # the detection itself
    assert not np.allclose(a.boxes[0], boxes[1])  # the filtered estimate, between the two
    for out in (a, b):  # confirmed now: the frame it was born in comes with it
        assert out.first_seen_previous_frame.track_ids.tolist() == [1]
        assert np.allclose(out.first_seen_previous_frame.boxes[0], boxes[0])
