import numpy as np
import pytest

from autotrack.detections import TrackedObjects
from autotrack.tracks import TrackCollector


def objects(ids, boxes, scores=None, classes=None, late=None):
    n = len(ids)
    return TrackedObjects(
        np.asarray(ids, dtype=np.int64), np.asarray(boxes, dtype=float).reshape(-1, 4),
        np.asarray(scores if scores is not None else [0.9] * n, dtype=float),
        np.asarray(classes if classes is not None else [0] * n, dtype=np.int64),
        late,
    )


def test_collects_tracks_and_votes_class_by_score():
    collector = TrackCollector()
    collector.add(0, objects([1], [[0, 0, 10, 10]], classes=[2], scores=[0.3]))
    collector.add(1, objects([1, 2], [[1, 0, 11, 10], [50, 50, 60, 60]], classes=[0, 5]))
    collector.add(3, objects([1], [[3, 0, 13, 10]], classes=[0], scores=[0.9]))
    tracks = collector.tracks()
    assert [t.track_id for t in tracks] == [1, 2]
    assert tracks[0].frames.tolist() == [0, 1, 3] and tracks[0].class_id == 0
    assert tracks[1].class_id == 5


def test_late_confirmed_tracks_get_their_first_frame():
    collector = TrackCollector()
    collector.add(0, objects([], []))
    late = objects([7], [[5, 5, 15, 25]])
    collector.add(1, objects([7], [[6, 5, 16, 25]], late=late))
    (track,) = collector.tracks()
    assert track.frames.tolist() == [0, 1]
    assert np.allclose(track.boxes[0], [5, 5, 15, 25])


def test_frames_must_increase_per_track():
    collector = TrackCollector()
    collector.add(2, objects([1], [[0, 0, 1, 1]]))
    with pytest.raises(ValueError):
        collector.add(2, objects([1], [[0, 0, 1, 1]]))


def test_smoothing_removes_jitter_within_runs_only():
    from autotrack.smoothing import smooth_track
    from autotrack.tracks import Track

    rng = np.random.default_rng(0)
    frames = np.r_[np.arange(0, 40), np.arange(50, 90)]
    truth = np.stack([frames * 2.0, frames * 0 + 10, frames * 2.0 + 40, frames * 0 + 90], axis=1)
    noisy = truth + rng.normal(0, 2, truth.shape)
    track = Track(1, 0, frames, noisy, np.ones(len(frames)))
    smoothed = smooth_track(track, 1.0)
    assert np.abs(smoothed.boxes - truth).mean() < 0.7 * np.abs(noisy - truth).mean()
    # Nothing leaks across the gap: the first run alone gives the same boxes.
    first = smooth_track(Track(1, 0, frames[:40], noisy[:40], np.ones(40)), 1.0)
    assert np.array_equal(first.boxes, smoothed.boxes[:40])
    assert smooth_track(track, 0) is track
    with pytest.raises(ValueError):
        smooth_track(track, -1)
