"""Camera-motion compensation (issue 16, robust to moving cameras): the shift is estimated
from the pixels, and `autotrack annotate --camera-motion` tracks a panning view better.

The scene is synthetic but has pixels: a textured canvas seen through a window that sways
over it (the true shift is known exactly), objects moving on their own in the world, their
detections seen through the same window.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass

import cv2
import numpy as np
import pytest

from autotrack.camera_motion import CameraMotion, CameraMotionConfig
from autotrack.detections import Detections
from autotrack.overlap import run_ahead
from autotrack.pipeline import track_video
from autotrack.speed import SpeedOptions
from autotrack.synthetic import SceneConfig, make_scene
from autotrack.trackers.bytetrack import ByteTrack
from autotrack.trackers.deepsort import DeepSort
from autotrack.tracking_options import TrackingOptions, add_tracking_arguments
from autotrack.video import VideoInfo
from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "tools" / "bench"))
from common import Truth, per_frame, tracking_metrics  # noqa: E402

WIDTH, HEIGHT = 640, 480
MARGIN = np.array([80, 60])  # how far the window can sway from the centre, x and y


def canvas(seed: int = 0) -> np.ndarray:
    """A textured background larger than the view by MARGIN on every side."""
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, (HEIGHT + 2 * MARGIN[1], WIDTH + 2 * MARGIN[0], 3))
    return cv2.GaussianBlur(noise.astype(np.float32), (0, 0), 3).clip(0, 255).astype(np.uint8)


def sway(frames: int, amplitude: float = 60.0, period: float = 24.0) -> np.ndarray:
    """(frames, 2) whole-pixel window corners: sideways and up and down sines."""
    t = np.arange(frames)
    offsets = MARGIN + np.stack([amplitude * np.sin(2 * np.pi * t / period),
                                 0.5 * amplitude * np.sin(2 * np.pi * t / (1.3 * period))], 1)
    return np.round(offsets).astype(np.int64)


def view(background: np.ndarray, corner: np.ndarray) -> np.ndarray:
    x, y = corner
    return background[y:y + HEIGHT, x:x + WIDTH]


def test_the_estimated_shift_is_the_window_motion():
    background = canvas()
    corners = sway(40)
    camera = CameraMotion()
    found = np.array([camera.shift(view(background, c)) for c in corners])
    true = -np.diff(corners, axis=0)
    assert np.abs(true).max() >= 15  # a fast pan, not a creep
    assert np.allclose(found[0], 0.0)  # nothing to compare the first frame with
    error = np.hypot(*(found[1:] - true).T)
    assert error.mean() < 0.5 and error.max() < 1.5


def test_a_still_camera_gives_no_shift_even_with_objects_moving():
    """Objects that move on their own (bright blocks, all one way: a crowd walking) are left
    out of the estimate through their boxes; without the boxes they would pull it along."""
    background = canvas(1)
    with_boxes, without = CameraMotion(), CameraMotionConfig(mask_detections=False)
    plain = CameraMotion(without)
    drift, masked = [], []
    for t in range(20):
        frame = view(background, MARGIN).copy()
        boxes = np.array([[x + 6 * t, y, x + 6 * t + 60, y + 140]
                          for x, y in ((40, 60), (200, 240), (380, 100), (150, 300))], float)
        for x1, y1, x2, y2 in boxes.astype(int):
            frame[y1:y2, x1:x2] = (255, 255, 255) if (x1 // 6) % 2 else (0, 0, 0)
            frame[y1 + 20:y1 + 60, x1 + 10:x1 + 50] = (40, 200, 90)
        masked.append(with_boxes.shift(frame, boxes))
        drift.append(plain.shift(frame))
    assert np.abs(np.array(masked)).max() < 0.3
    assert np.abs(np.array(drift)).max() > 1.0  # the unmasked estimate follows the blocks


def test_a_still_camera_is_looked_at_on_every_fourth_frame_until_it_moves():
    """After 10 still estimates only every 4th frame is estimated (against the last one
    estimated): a pan that starts in between reaches the tracker whole at the next check,
    and from then on every frame is estimated again, as ``still_after=0`` (every frame).
    A still camera's noise (under ``still_px``) is held back: exactly no motion."""
    background = canvas(3)
    corners = [MARGIN] * 16 + [MARGIN + [3 * t, 0] for t in range(1, 13)]
    found, looked = {}, {}
    for still_after in (10, 0):
        camera = CameraMotion(CameraMotionConfig(still_after=still_after))
        calls = []
        correlate = camera._correlate
        camera._correlate = lambda *a: calls.append(1) or correlate(*a)  # count the estimates
        found[still_after] = np.array([camera.shift(view(background, c), index=t)
                                       for t, c in enumerate(corners)])
        looked[still_after] = len(calls)
        assert np.allclose(camera.path().at(np.array([27]))[0],
                           found[still_after].sum(axis=0))
    assert looked == {10: 27 - 6, 0: 27}  # frames 11-13 and 15-17 not looked at
    assert not found[10][:18].any()  # still until the check after the pan began: exactly 0
    assert np.abs(found[10][18] - found[0][16:19].sum(axis=0)).max() < 1.0  # nothing lost
    assert np.allclose(found[10][19:], found[0][19:])  # moving: every frame again
    with pytest.raises(ValueError, match="still_every"):
        CameraMotionConfig(still_every=0)


def test_a_given_shift_moves_bytetrack_predictions_and_none_changes_nothing():
    box = np.array([[100.0, 100.0, 130.0, 180.0]])
    moved = box + [45.0, 0.0, 45.0, 0.0]  # further than the box is wide: no overlap left

    def run(shift: np.ndarray | None) -> list[np.ndarray]:
        tracker = ByteTrack()
        ids = []
        for boxes in (box, box, moved):
            kwargs = {} if shift is None or boxes is box else {"camera_shift": shift}
            ids.append(tracker.update(Detections(boxes, np.array([0.9]), np.zeros(1, int)),
                                      **kwargs).track_ids)
        return ids

    assert run(None)[2].tolist() != run(None)[1].tolist()  # without it: a new identity
    assert run(np.array([45.0, 0.0]))[2].tolist() == run(None)[1].tolist()
    plain, zero = ByteTrack(), ByteTrack()
    for boxes in (box, box, moved):
        d = Detections(boxes, np.array([0.9]), np.zeros(1, int))
        plain.update(d)
        zero.update(d, camera_shift=np.zeros(2))
    assert plain.to_state() == zero.to_state()
    with pytest.raises(ValueError, match="finite"):
        zero.update(Detections(box, np.array([0.9]), np.zeros(1, int)),
                    camera_shift=np.array([np.nan, 0.0]))


def test_a_given_shift_moves_deepsort_predictions_and_none_changes_nothing():
    """DeepSORT's cascade gates appearance by the motion model: a jump of the whole scene
    fails the gate (one appearance, so only motion can refuse) unless the shift moved the
    prediction with it."""
    box = np.array([[100.0, 100.0, 130.0, 180.0]])
    moved = box + [45.0, 0.0, 45.0, 0.0]  # further than the box is wide: no overlap left
    look = np.array([[1.0, 0.0, 0.0, 0.0]])  # the same embedding on every frame

    def run(shift: np.ndarray | None) -> DeepSort:
        tracker = DeepSort()
        for boxes in (box, box, box, box):  # confirmed (n_init 3), then seen once more
            tracker.update(Detections(boxes, np.array([0.9]), np.zeros(1, int)), look)
        return tracker

    def last_ids(shift: np.ndarray | None) -> tuple[list[int], list[int]]:
        tracker = run(None)
        before = tracker.update(Detections(box, np.array([0.9]), np.zeros(1, int)), look)
        kwargs = {} if shift is None else {"camera_shift": shift}
        after = tracker.update(Detections(moved, np.array([0.9]), np.zeros(1, int)), look,
                               **kwargs)
        return before.track_ids.tolist(), after.track_ids.tolist()

    before, after = last_ids(None)
    assert before == [1] and after != before  # without it: lost, a new track (reported later)
    before, after = last_ids(np.array([45.0, 0.0]))
    assert after == before == [1]
    plain, zero = run(None), run(None)
    d = Detections(moved, np.array([0.9]), np.zeros(1, int))
    plain.update(d, look)
    zero.update(d, look, camera_shift=np.zeros(2))
    assert plain.to_state() == zero.to_state()
    with pytest.raises(ValueError, match="finite"):
        zero.update(d, look, camera_shift=np.array([0.0, np.inf]))


@dataclass
class _Panned:
    """A synthetic video seen through a swaying window: frames in order, and a detector
    that returns each frame's detections (the frames reach it in order, sequentially)."""

    frames: list[np.ndarray]
    detections: list[Detections]
    truth: Truth
    class_names: tuple[str, ...] = ("person",)
    thread_safe = False

    def __post_init__(self) -> None:
        self.info = VideoInfo(len(self.frames), WIDTH, HEIGHT, 10.0)
        self._next = 0

    def __iter__(self):
        self._next = 0
        return iter(enumerate(self.frames))

    def detect(self, frame: np.ndarray) -> Detections:
        found = self.detections[self._next]
        self._next += 1
        return found


def panned_scene(step: int = 3) -> _Panned:
    world = make_scene(SceneConfig(objects=8, frames=90, width=WIDTH, height=HEIGHT, seed=3,
                                   false_positives=0.2))
    corners = sway(len(world.detections))
    background = canvas(2)
    frames, detections, ids, boxes = [], [], [], []
    for t in range(0, len(world.detections), step):  # every 3rd frame: a low frame rate
        shift = np.tile(MARGIN - corners[t], 2)
        d = world.detections[t]
        frames.append(view(background, corners[t]))
        detections.append(Detections(d.boxes + shift, d.scores, d.class_ids))
        ids.append(np.arange(len(world.true_boxes[t])))
        boxes.append(world.true_boxes[t] + shift)
    return _Panned(frames, detections, Truth(ids, boxes))


def annotate_hota(scene: _Panned, camera_motion: bool) -> float:
    options = TrackingOptions(camera_motion=camera_motion)
    result = track_video(scene, scene, options.tracker(scene.info.fps), smooth=options.smooth,
                         refine=options.refine_config(scene.info.fps),
                         speed=SpeedOptions(sequential=True),
                         camera_motion=options.camera_motion_estimator())
    return tracking_metrics(scene.truth, per_frame(result.tracks, len(scene.frames)))["HOTA"]


def test_the_estimate_off_the_tracking_thread_gives_the_same_tracks():
    """Unless --sequential, the shift is estimated on a thread of its own between the
    detector and the tracker: the same tracks as on the tracker's thread, and its time
    counted apart from the tracking time."""
    scene = panned_scene()
    options = TrackingOptions(camera_motion=True)

    def run(speed: SpeedOptions):
        return track_video(scene, scene, options.tracker(scene.info.fps), smooth=options.smooth,
                           refine=options.refine_config(scene.info.fps), speed=speed,
                           camera_motion=options.camera_motion_estimator())

    inline, ahead = run(SpeedOptions(sequential=True)), run(SpeedOptions(threads=2))
    assert len(ahead.tracks) == len(inline.tracks) > 0
    for a, b in zip(ahead.tracks, inline.tracks):
        assert a.track_id == b.track_id and np.array_equal(a.frames, b.frames)
        assert np.array_equal(a.boxes, b.boxes)
    assert ahead.times.camera > 0 and inline.times.camera == 0  # inline: in times.track
    assert "camera" in ahead.times.fps(1) and "camera" not in inline.times.fps(1)


def test_run_ahead_keeps_order_raises_in_order_and_stops_when_closed():
    assert list(run_ahead(range(50), lambda x: x * x, depth=3)) == [x * x for x in range(50)]

    def fails_at_five(x: int) -> int:
        if x == 5:
            raise RuntimeError("five")
        return x

    got = []
    with pytest.raises(RuntimeError, match="five"):
        for x in run_ahead(range(10), fails_at_five):
            got.append(x)
    assert got == [0, 1, 2, 3, 4]
    closed = threading.Event()

    def endless():
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    ahead = run_ahead(endless(), lambda x: x, depth=2)
    assert next(ahead) == 0
    ahead.close()  # the thread stops and closes its source
    assert closed.is_set()


def test_annotate_with_camera_motion_tracks_a_panning_view_better():
    scene = panned_scene()
    without, with_it = annotate_hota(scene, False), annotate_hota(scene, True)
    assert with_it >= without + 0.10, (without, with_it)
    assert with_it >= 0.6


def test_camera_motion_is_on_by_default_in_both_annotation_commands():
    import argparse

    parser = argparse.ArgumentParser()
    add_tracking_arguments(parser)
    assert TrackingOptions().camera_motion
    assert TrackingOptions.from_args(parser.parse_args([])).camera_motion
    assert TrackingOptions.from_args(parser.parse_args(["--camera-motion"])).camera_motion
    off = TrackingOptions.from_args(parser.parse_args(["--no-camera-motion"]))
    assert not off.camera_motion and off.camera_motion_estimator() is None
    assert isinstance(TrackingOptions(camera_motion=True).camera_motion_estimator(),
                      CameraMotion)
