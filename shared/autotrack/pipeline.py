"""Detector + tracker over a whole video: the offline annotation job behind ``autotrack annotate``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from autotrack.detectors.base import Detector, filter_detections
from autotrack.refine import RefineConfig, RefineResult, refine_tracks
from autotrack.smoothing import smooth_track
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

    def fps(self, frames: int) -> dict[str, float]:
        return {name: frames / seconds if seconds > 0 else float("inf")
                for name, seconds in vars(self).items()}


@dataclass
class AnnotationResult:
    tracks: list[Track]
    class_names: tuple[str, ...]
    video: VideoInfo
    frames_read: int
    times: StageTimes = field(default_factory=StageTimes)
    refinement: RefineResult | None = None  # what --refine joined and filled, when asked


def track_video(
    source: FrameSource,
    detector: Detector,
    tracker: MultiObjectTracker,
    *,
    class_ids: np.ndarray | None = None,
    on_frame: Callable[[int], None] | None = None,
    smooth: float = 0.0,
    refine: RefineConfig | None = None,
) -> AnnotationResult:
    """Run detection and tracking on every frame; collect whole-video tracks, optionally
    refine them (join broken tracks, fill gaps), and smooth them over time with a Gaussian
    of ``smooth`` frames (0: as the tracker reported them)."""
    times = StageTimes()
    collector = TrackCollector()
    frames_read = 0
    clock = time.perf_counter
    start = clock()
    for index, frame in source:
        decoded = clock()
        detections = filter_detections(detector.detect(frame), class_ids)
        detected = clock()
        collector.add(index, tracker.update(detections, frame=frame))
        tracked = clock()
        times.decode += decoded - start
        times.detect += detected - decoded
        times.track += tracked - detected
        frames_read = index + 1
        if on_frame is not None:
            on_frame(index)
        start = clock()
    tracks = collector.tracks()
    # Refine before smoothing, so that filled frames are smoothed with the rest.
    refinement = refine_tracks(tracks, config=refine) if refine is not None else None
    if refinement is not None:
        tracks = refinement.tracks
    tracks = [smooth_track(track, smooth) for track in tracks]
    times.track += clock() - start  # collecting, refining and smoothing is tracking work
    return AnnotationResult(tracks, tuple(detector.class_names), source.info, frames_read, times,
                            refinement)
