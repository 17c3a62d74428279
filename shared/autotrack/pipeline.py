"""Detector + tracker over a whole video: the offline job behind ``autotrack annotate``."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from autotrack.camera_motion import CameraMotion, CameraPath
from autotrack.detect_every import bridge, detected_frame
from autotrack.detections import Detections
from autotrack.detectors.base import Detector, filter_detections
from autotrack.overlap import BusyTimes, Detected, DetectMany, detect_in_order, run_ahead
from autotrack.refine import RefineConfig, RefineResult, refine_tracks
from autotrack.smoothing import smooth_track
from autotrack.speed import SpeedOptions
from autotrack.trackers.base import MultiObjectTracker
from autotrack.tracks import Track, TrackCollector
from autotrack.video import FrameSource, VideoInfo


@dataclass
class StageTimes:
    """Seconds spent in each stage, to report where an annotation run's time goes."""

    decode: float = 0.0
    detect: float = 0.0
    track: float = 0.0
    output: float = 0.0
    # the camera-shift estimate on its own thread beside detection (--camera-motion, not
    # --sequential); on the tracker's thread (sequential) it is counted in ``track``
    camera: float = 0.0

    def fps(self, frames: int) -> dict[str, float]:
        return {name: frames / seconds if seconds > 0 else float("inf")
                for name, seconds in vars(self).items() if name != "camera" or seconds > 0}


@dataclass
class AnnotationResult:
    tracks: list[Track]
    class_names: tuple[str, ...]
    video: VideoInfo
    frames_read: int
    times: StageTimes = field(default_factory=StageTimes)
    refinement: RefineResult | None = None  # what --refine joined and filled, when asked
    seconds: float = 0.0  # wall time of the whole run (the stages overlap unless sequential)


def track_video(
    source: FrameSource,
    detector: Detector,
    tracker: MultiObjectTracker,
    *,
    class_ids: np.ndarray | None = None,
    on_frame: Callable[[int], None] | None = None,
    smooth: float = 0.0,
    refine: RefineConfig | None = None,
    speed: SpeedOptions | None = None,
    camera_motion: CameraMotion | None = None,
) -> AnnotationResult:
    """Run detection and tracking on every frame; collect whole-video tracks, optionally
    refine them (join broken tracks, fill gaps), and smooth them over time with a Gaussian
    of ``smooth`` frames (0: as the tracker reported them).

    ``speed`` None (or ``sequential``) runs the original loop; otherwise frames are decoded
    ahead and detected several at once (:mod:`autotrack.overlap`), reaching the tracker in
    the same order, so the tracks are the same. With ``detect_every`` K > 1 the tracker must
    be built for :func:`autotrack.detect_every.tracker_frame_rate`. ``camera_motion``
    estimates the camera's shift from each decoded frame and moves the tracker's predictions
    by it (:mod:`autotrack.camera_motion`): unless sequential, on a thread of its own between
    the detector and the tracker (:func:`autotrack.overlap.run_ahead`; its busy time is
    ``times.camera``), so that the estimate overlaps with detection and tracking."""
    speed = speed or SpeedOptions(sequential=True)
    every = speed.detect_every
    times = StageTimes()
    busy = BusyTimes()
    clock = time.perf_counter
    began = clock()
    frames = _sampled(source, every)
    wanted = detected_frame(every)
    if speed.sequential:
        stream = _one_by_one(frames, lambda images: _detect_many(detector, images), wanted, busy)
    else:
        workers = speed.frames_at_once if getattr(detector, "thread_safe", False) else 1
        stream = detect_in_order(frames, lambda images: _detect_many(detector, images),
                                 workers=workers, chunk=speed.frames_per_call, wanted=wanted,
                                 times=busy)
        if camera_motion is not None:
            stream = run_ahead(stream, lambda item: _with_camera_shift(item, camera_motion, busy),
                               name="autotrack-camera")
    try:
        tracks, frames_read = collect_tracks(stream, tracker, every=every, class_ids=class_ids,
                                             on_frame=on_frame, times=times,
                                             camera_motion=camera_motion)
    finally:
        stream.close()  # stops the reader and workers when tracking failed
    start = clock()
    tracks, refinement = finish_tracks(
        tracks, refine=refine, smooth=smooth,
        camera_path=camera_motion.path() if camera_motion is not None else None)
    times.track += clock() - start  # collecting, refining and smoothing is tracking work
    times.decode, times.detect, times.camera = busy.decode, busy.detect, busy.camera
    return AnnotationResult(tracks, tuple(detector.class_names), source.info, frames_read, times,
                            refinement, clock() - began)


def finish_tracks(tracks: list[Track], *, refine: RefineConfig | None = None,
                  smooth: float = 0.0, camera_path: CameraPath | None = None
                  ) -> tuple[list[Track], RefineResult | None]:
    """The offline steps after tracking: refine (when asked), then smooth (so that filled
    frames are smoothed with the rest). With a ``camera_path`` both run on the tracks as a
    still camera would have seen them: a swaying camera's jumps are not the objects' motion
    (smoothed in the image, a synthetic pan of tests/test_camera_motion.py scored 0.26 HOTA
    instead of 0.90)."""
    if camera_path is not None:
        tracks = [camera_path.still(track) for track in tracks]
    refinement = refine_tracks(tracks, config=refine) if refine is not None else None
    if refinement is not None:
        tracks = refinement.tracks
    tracks = [smooth_track(track, smooth) for track in tracks]
    if camera_path is not None:
        tracks = [camera_path.moving(track) for track in tracks]
    return tracks, refinement


def collect_tracks(stream: Iterable[Detected], tracker: MultiObjectTracker, *, every: int = 1,
                   class_ids: np.ndarray | None = None,
                   on_frame: Callable[[int], None] | None = None,
                   times: StageTimes | None = None,
                   camera_motion: CameraMotion | None = None) -> tuple[list[Track], int]:
    """The tracker over a stream of frames in order: whole-video tracks (with the frames
    ``every`` > 1 skipped bridged, :mod:`autotrack.detect_every`) and the frames seen.
    Frames without detections move ByteTrack on (``advance``); other trackers skip them.
    With ``camera_motion``, each decoded frame's camera shift (the detections left out of
    its estimate) reaches the tracker with the next update or advance, summed over frames
    that were not decoded: the stream's ``camera_shift`` where a stage before estimated it
    (:func:`autotrack.overlap.run_ahead`), else estimated here."""
    clock = time.perf_counter
    times = times if times is not None else StageTimes()
    collector = TrackCollector()
    frames_read = 0
    advance = getattr(tracker, "advance", None)
    moved = np.zeros(2)  # camera shift not yet given to the tracker
    for item in stream:
        start = clock()
        shift: dict[str, np.ndarray] = {}  # the tracker's camera_shift argument, if any
        if camera_motion is not None:
            if item.camera_shift is not None:
                moved = moved + item.camera_shift
            elif item.frame is not None:
                moved = moved + _camera_shift(item, camera_motion)
            shift = {"camera_shift": moved}
        if item.detections is not None:
            detections = filter_detections(item.detections, class_ids)
            collector.add(item.index, tracker.update(detections, frame=item.frame, **shift),
                          every)
            moved = np.zeros(2)
        elif advance is not None:
            advance(**shift)
            moved = np.zeros(2)
        times.track += clock() - start
        frames_read = item.index + 1
        if on_frame is not None:
            on_frame(item.index)
    start = clock()
    tracks = bridge(collector.tracks(), every, frames_read)
    times.track += clock() - start
    return tracks, frames_read


def _camera_shift(item: Detected, camera_motion: CameraMotion) -> np.ndarray:
    boxes = item.detections.boxes if item.detections is not None else None
    return camera_motion.shift(item.frame, boxes, index=item.index)


def _with_camera_shift(item: Detected, camera_motion: CameraMotion, busy: BusyTimes
                       ) -> Detected:
    """The item with its camera shift (zero for a frame not decoded), estimated on the
    thread of :func:`autotrack.overlap.run_ahead`, which alone adds to ``busy.camera``."""
    start = time.perf_counter()
    shift = _camera_shift(item, camera_motion) if item.frame is not None else np.zeros(2)
    busy.camera += time.perf_counter() - start
    return replace(item, camera_shift=shift)


def _sampled(source: FrameSource, every: int) -> Iterator[tuple[int, np.ndarray | None]]:
    """The source's frames; with ``every`` > 1 a FrameSource skips decoding the frames
    that will not be detected (other sources, such as CVAT frame streams, decode all)."""
    if every > 1 and isinstance(source, FrameSource):
        return source.sampled(every)
    return iter(source)


def _detect_many(detector: Detector, frames: Sequence[np.ndarray]) -> list[Detections]:
    batched = getattr(detector, "detect_batch", None)
    if batched is not None and len(frames) > 1:
        return batched(frames)
    return [detector.detect(frame) for frame in frames]


def _one_by_one(frames: Iterator[tuple[int, np.ndarray | None]], detect: DetectMany,
                wanted: Callable[[int], bool], busy: BusyTimes) -> Generator[Detected]:
    """The original loop's reading and detection, one frame at a time in this thread."""
    clock = time.perf_counter
    start = clock()
    for index, frame in frames:
        decoded = clock()
        found = detect([frame])[0] if frame is not None and wanted(index) else None
        busy.decode += decoded - start
        busy.detect += clock() - decoded
        yield Detected(index, frame, found)
        start = clock()  # the caller's tracking ran in between
