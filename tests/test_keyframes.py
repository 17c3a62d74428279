"""Keyframe thinning: CVAT's interpolation of the kept keyframes must redraw the track."""

from __future__ import annotations

import time

import numpy as np
import pytest

from autotrack.geometry import paired_iou
from autotrack.keyframes import Keyframe, interpolate, keyframe_stats, thin_keyframes
from autotrack.tracks import Track


def make_track(frames, boxes, track_id: int = 1, class_id: int = 0) -> Track:
    frames = np.asarray(frames, dtype=np.int64)
    return Track(track_id, class_id, frames, np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
                 np.ones(len(frames)))


def random_walk(rng: np.random.Generator, frames: np.ndarray, step: float = 2.0) -> np.ndarray:
    """Jittery boxes that keep a positive size: centre and size walk, size stays >= 20 px."""
    n = len(frames)
    centre = np.cumsum(rng.normal(0, step, (n, 2)), axis=0) + 300
    size = np.abs(np.cumsum(rng.normal(0, step / 2, (n, 2)), axis=0) + [60, 120]) + 20
    return np.concatenate([centre - size / 2, centre + size / 2], axis=1)


def assert_redraws(track: Track, keyframes: list[Keyframe], min_iou: float) -> None:
    """The guarantee: tracked frames fit within min_iou, skipped frames are hidden."""
    span = np.arange(track.first_frame - 3, track.last_frame + 4)
    boxes, visible = interpolate(keyframes, span)
    tracked = np.isin(span, track.frames)
    assert visible[tracked].all()
    iou = paired_iou(boxes[tracked], track.boxes)
    assert iou.min() >= min_iou
    assert not visible[~tracked & (span <= track.last_frame)].any()
    assert np.isnan(boxes[~visible]).all()


def test_straight_line_needs_two_keyframes():
    frames = np.arange(10, 110)
    t = (frames - 10)[:, None]
    boxes = np.array([5.0, 8.0, 40.0, 90.0]) + t * np.array([3.0, 1.0, 3.5, 1.8])
    track = make_track(frames, boxes)

    keyframes = thin_keyframes(track, min_iou=0.99)

    assert keyframes == [
        Keyframe(10, tuple(boxes[0]), outside=False),
        Keyframe(109, tuple(boxes[-1]), outside=False),
        Keyframe(110, tuple(boxes[-1]), outside=True),
    ]
    assert_redraws(track, keyframes, 0.99)


@pytest.mark.parametrize("min_iou", [0.5, 0.8, 0.9, 0.95, 0.99])
def test_random_walk_keeps_the_guarantee(min_iou):
    rng = np.random.default_rng(7)
    frames = np.r_[0:150, 152:153, 160:400, 401:500]
    track = make_track(frames, random_walk(rng, frames))

    keyframes = thin_keyframes(track, min_iou=min_iou)

    assert_redraws(track, keyframes, min_iou)
    visible = [k.frame for k in keyframes if not k.outside]
    assert set(visible) <= set(frames.tolist())
    assert {0, 149, 152, 160, 399, 401, 499} <= set(visible)  # every run's ends
    assert len(visible) < len(frames)


def test_looser_tolerance_keeps_fewer_keyframes():
    rng = np.random.default_rng(3)
    frames = np.arange(300)
    track = make_track(frames, random_walk(rng, frames, step=1.0))
    counts = [
        keyframe_stats([track], min_iou=m).keyframes for m in (0.5, 0.8, 0.9, 0.95, 0.99)
    ]
    assert counts == sorted(counts)
    assert counts[0] < counts[-1]


def test_turn_is_kept_as_a_keyframe():
    frames = np.arange(41)
    x = np.where(frames <= 20, frames * 5.0, 200 - frames * 5.0)
    boxes = np.stack([x, np.zeros(41), x + 40, np.full(41, 40.0)], axis=1)
    track = make_track(frames, boxes)

    keyframes = thin_keyframes(track, min_iou=0.9, last_frame=40)

    assert [k.frame for k in keyframes] == [0, 20, 40]
    assert_redraws(track, keyframes, 0.9)


def test_gaps_get_outside_keyframes_and_are_hidden():
    frames = np.r_[0:10, 15:20, 21:30]
    boxes = np.tile([10.0, 10.0, 50.0, 90.0], (len(frames), 1)) + frames[:, None]
    track = make_track(frames, boxes)

    keyframes = thin_keyframes(track)

    outside = [k for k in keyframes if k.outside]
    assert [k.frame for k in outside] == [10, 20, 30]
    for k in outside:  # an outside marker repeats the box it hides
        assert k.box == tuple(boxes[frames == k.frame - 1][0])
    _, visible = interpolate(keyframes, np.arange(40))
    assert visible.tolist() == np.isin(np.arange(40), frames).tolist()
    assert_redraws(track, keyframes, 0.9)


def test_single_frame_track():
    track = make_track([7], [[1.0, 2.0, 3.0, 4.0]])
    assert thin_keyframes(track) == [
        Keyframe(7, (1.0, 2.0, 3.0, 4.0), outside=False),
        Keyframe(8, (1.0, 2.0, 3.0, 4.0), outside=True),
    ]
    assert thin_keyframes(track, last_frame=7) == [Keyframe(7, (1.0, 2.0, 3.0, 4.0), False)]
    _, visible = interpolate(thin_keyframes(track), [6, 7, 8, 9])
    assert visible.tolist() == [False, True, False, False]


def test_closing_outside_respects_last_frame():
    track = make_track(np.arange(5, 20), np.tile([0.0, 0.0, 10.0, 10.0], (15, 1)))
    assert thin_keyframes(track)[-1] == Keyframe(20, (0.0, 0.0, 10.0, 10.0), outside=True)
    assert thin_keyframes(track, last_frame=20)[-1].frame == 20
    closed_by_video_end = thin_keyframes(track, last_frame=19)
    assert not closed_by_video_end[-1].outside
    assert closed_by_video_end[-1].frame == 19
    with pytest.raises(ValueError, match="past the last frame"):
        thin_keyframes(track, last_frame=18)


def test_interpolate_reads_keyframes_like_cvat():
    keyframes = [
        Keyframe(0, (0.0, 0.0, 10.0, 10.0), False),
        Keyframe(10, (10.0, 20.0, 30.0, 40.0), False),
        Keyframe(11, (10.0, 20.0, 30.0, 40.0), True),
        Keyframe(15, (5.0, 5.0, 15.0, 15.0), False),
    ]
    boxes, visible = interpolate(keyframes, [-1, 0, 5, 10, 11, 14, 15, 99])
    assert visible.tolist() == [False, True, True, True, False, False, True, True]
    np.testing.assert_allclose(boxes[2], [5.0, 10.0, 20.0, 25.0])
    np.testing.assert_allclose(boxes[7], [5.0, 5.0, 15.0, 15.0])  # held after the last one
    assert np.isnan(boxes[[0, 4, 5]]).all()


def test_long_static_track_is_cheap():
    track = make_track(np.arange(50_000), np.tile([1.0, 2.0, 30.0, 40.0], (50_000, 1)))
    start = time.perf_counter()
    keyframes = thin_keyframes(track, last_frame=49_999)
    assert time.perf_counter() - start < 2.0
    assert [k.frame for k in keyframes] == [0, 49_999]


def test_stats_and_validation():
    a = make_track(np.arange(100), np.tile([0.0, 0.0, 10.0, 10.0], (100, 1)))
    b = make_track([3, 4, 9], np.tile([0.0, 0.0, 10.0, 10.0], (3, 1)), track_id=2)
    stats = keyframe_stats([a, b], last_frame=99)
    assert (stats.tracks, stats.tracked_frames, stats.keyframes, stats.outside_keyframes) == (
        2, 103, 5, 2)
    assert stats.ratio == pytest.approx(5 / 103)
    assert "4.9%" in str(stats)
    assert thin_keyframes(make_track([], np.zeros((0, 4)))) == []
    with pytest.raises(ValueError):
        thin_keyframes(a, min_iou=0.0)
    with pytest.raises(ValueError, match="strictly increasing"):
        thin_keyframes(make_track([3, 3], np.zeros((2, 4))))
