"""What `autotrack annotate` tracks with (issue 16): offline settings, not the online doors'.

The annotation commands see the whole video, so their tracker keeps a lost object 2 s (the
online doors: ByteTrack's 1 s), its Kalman filter adapts faster below 10 frames/s, and the
tracks are refined by default. The last test scores the defaults on real detections at a
low frame rate (MOT17-09's public detections, every 4th frame).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from autotrack.cli import build_parser
from autotrack.detections import Detections
from autotrack.evaluate import SequenceData, evaluate_sequence
from autotrack.evaluate.sequences import load_sequence
from autotrack.kalman import KalmanFilterXYAH
from autotrack.refine import refine_tracks
from autotrack.smoothing import smooth_track
from autotrack.trackers.bytetrack import ByteTrack, ByteTrackConfig
from autotrack.tracking_options import TrackingOptions, velocity_noise_scale
from autotrack.tracks import TrackCollector
from conftest import MOT_DIR


def test_the_annotation_defaults_are_offline_ones():
    options = TrackingOptions()
    assert options.refine
    for fps in (30.0, 15.0, 7.5):
        tracker = options.tracker(fps)
        assert tracker.config.max_time_lost == int(2 * fps)  # 2 s at any rate
    assert velocity_noise_scale(30.0) == velocity_noise_scale(10.0) == 1.0
    assert velocity_noise_scale(7.5) == pytest.approx(10 / 7.5)
    slow = options.tracker(5.0)
    reference = KalmanFilterXYAH.std_weight_velocity
    assert slow.kalman.std_weight_velocity == pytest.approx(2 * reference)
    assert options.tracker(25.0).kalman == KalmanFilterXYAH()  # the reference filter


def test_refine_is_on_unless_turned_off():
    parser = build_parser()
    base = ["annotate", "video.mp4", "-o", "out.xml"]
    assert TrackingOptions.from_args(parser.parse_args(base)).refine
    assert TrackingOptions.from_args(parser.parse_args([*base, "--refine"])).refine
    assert not TrackingOptions.from_args(parser.parse_args([*base, "--no-refine"])).refine


def test_the_noise_scale_travels_with_the_state_and_is_checked():
    tracker = ByteTrack(ByteTrackConfig(velocity_noise_scale=2.0))
    walker = [Detections(np.array([[10.0 + 9 * t, 50, 40 + 9 * t, 130]]), np.array([0.9]),
                         np.zeros(1, np.int64)) for t in range(6)]
    for detections in walker[:3]:
        tracker.update(detections)
    again = ByteTrack.from_state(tracker.to_state())
    assert again.config.velocity_noise_scale == 2.0
    for detections in walker[3:]:
        a, b = tracker.update(detections), again.update(detections)
        assert np.array_equal(a.track_ids, b.track_ids) and np.allclose(a.boxes, b.boxes)
    for bad in (0.0, -1.0, 1000.0, float("nan")):
        with pytest.raises(ValueError):
            ByteTrackConfig(velocity_noise_scale=bad)


def _every_fourth(truth: SequenceData) -> SequenceData:
    return replace(truth, num_frames=len(truth.ids[::4]), ids=truth.ids[::4],
                   boxes=truth.boxes[::4],
                   ignored_boxes=truth.ignored_boxes[::4] if truth.ignored_boxes else None,
                   ignored_distractor=(truth.ignored_distractor[::4]
                                       if truth.ignored_distractor else None))


def _hota(options: TrackingOptions, velocity_scale: float | None, fps: float) -> float:
    name = "MOT17-09-FRCNN"
    truth = _every_fourth(load_sequence(MOT_DIR / name / "gt.txt", ground_truth=True,
                                        convention="mot17", name=name))
    rows = np.loadtxt(MOT_DIR / name / "det.txt", delimiter=",", ndmin=2)
    tracker = options.tracker(fps)
    if velocity_scale is not None:
        tracker = ByteTrack(replace(tracker.config, velocity_noise_scale=velocity_scale))
    collector = TrackCollector()
    for t in range(truth.num_frames):
        r = rows[rows[:, 0] == 4 * t + 1]
        boxes = np.hstack([r[:, 2:4], r[:, 2:4] + r[:, 4:6]])
        collector.add(t, tracker.update(Detections(boxes, np.clip(r[:, 6], 0, 1),
                                                   np.zeros(len(r), np.int64))))
    tracks = collector.tracks()
    config = options.refine_config(fps)
    if config is not None:
        tracks = refine_tracks(tracks, config=config).tracks
    ids: list[list[int]] = [[] for _ in range(truth.num_frames)]
    boxes: list[list[np.ndarray]] = [[] for _ in range(truth.num_frames)]
    for track in (smooth_track(t, options.smooth) for t in tracks):
        for frame, box in zip(track.frames.tolist(), track.boxes):
            ids[frame].append(track.track_id)
            boxes[frame].append(box)
    pred = SequenceData("ours", truth.num_frames,
                        tuple(np.array(i, np.int64) for i in ids),
                        tuple(np.array(b, np.float64).reshape(-1, 4) for b in boxes))
    return float(evaluate_sequence(truth, pred).metrics["HOTA"])


def test_at_7_5_fps_the_offline_defaults_beat_the_online_settings():
    """MOT17-09 at 7.5 fps: the online doors' settings (1 s, reference filter, no refine),
    then 2 s, then the faster filter, then refine (the defaults): the defaults score best,
    more than 2 HOTA points above the online settings (measured 48.8, 48.8, 49.1, 51.9)."""
    online = TrackingOptions(track_buffer=30, refine=False)
    steps = [_hota(online, 1.0, 7.5),
             _hota(replace(online, track_buffer=60), 1.0, 7.5),
             _hota(replace(online, track_buffer=60), None, 7.5),
             _hota(TrackingOptions(), None, 7.5)]
    print("HOTA", [round(100 * h, 1) for h in steps])
    assert steps[-1] == max(steps) and steps[-1] > steps[0] + 0.02
