"""The tracking settings both annotation commands expose, and the tracker they build.

``autotrack annotate`` (videos on disk) and ``autotrack task annotate`` (CVAT tasks) share
these options, their defaults and their checks, so the two give the same tracks.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from autotrack.errors import InputError
from autotrack.smoothing import DEFAULT_SMOOTHING_SIGMA
from autotrack.trackers.base import MultiObjectTracker
from autotrack.trackers.bytetrack import ByteTrack, ByteTrackConfig

if TYPE_CHECKING:
    from autotrack.camera_motion import CameraMotion
    from autotrack.refine import RefineConfig

BOX_SOURCES = ("detection", "kalman")
TRACKERS = ("bytetrack", "deepsort")
DEFAULT_REID = "person-reid-0248"


def velocity_noise_scale(frame_rate: float) -> float:
    """ByteTrack's Kalman velocity noise, times this, for offline annotation at ``frame_rate``:
    1 from 10 frames/s up (as the reference), growing with the frame interval below (10 / fps).
    Measured: MOT17 at 7.5 fps +1.4 HOTA, TUD subsampled to 8.3 and 6.25 fps (not tuned on)
    up to +14; at 12.5 fps even 1.2 cost up to 3.6 HOTA on TUD, so nothing changes from 10 up."""
    return max(1.0, LOW_FRAME_RATE / frame_rate)


LOW_FRAME_RATE = 10.0  # frames/s below which the filter's velocity noise grows


@dataclass(frozen=True)
class TrackingOptions:
    conf: float = 0.5  # ByteTrack's high threshold
    low_conf: float = 0.1  # lowest score used at all (second stage)
    # Frames at 30 fps a lost object is remembered, scaled to the video's rate: 60 is 2 s at
    # any rate. The online doors keep ByteTrack's 1 s; annotation sees the whole video, and on
    # MOT17 at 7.5-30 fps 2 s gave +1.7 to +2.2 HOTA over 1 s (3 s: a little more on MOT17,
    # a little less on the rendered TUD scenes; docs/benchmarks.md (e)).
    track_buffer: int = 60
    boxes: str = "detection"  # box written per frame, before smoothing
    smooth: float = DEFAULT_SMOOTHING_SIGMA  # Gaussian sigma in frames; 0 keeps raw boxes
    refine: bool = True  # offline: relink broken tracks, fill their gaps (--no-refine: off)
    tracker_name: str = "bytetrack"
    reid: str = DEFAULT_REID  # DeepSORT's appearance model: registry name or file
    # Estimate the camera's shift from the frames and follow it (--no-camera-motion: off).
    # Rendered TUD through a swaying camera +1.4 to +23.5 HOTA, still scenes unchanged; on
    # its own thread beside the detector, and on a still camera every 4th frame only
    # (docs/benchmarks.md (e)).
    camera_motion: bool = True

    def __post_init__(self) -> None:
        if self.low_conf > self.conf:
            raise InputError(f"--low-conf {self.low_conf} is above --conf {self.conf}")
        if self.track_buffer < 0:
            raise InputError("--track-buffer must not be negative")
        if self.boxes not in BOX_SOURCES:
            raise InputError(f"--boxes must be one of {', '.join(BOX_SOURCES)}")
        if not 0 <= self.smooth <= 100:
            raise InputError("--smooth must lie in [0, 100] frames")
        if self.tracker_name not in TRACKERS:
            raise InputError(f"--tracker must be one of {', '.join(TRACKERS)}")

    def tracker(self, frame_rate: float, device: str | None = None) -> MultiObjectTracker:
        if self.tracker_name == "deepsort":
            from autotrack.reid import load_embedder  # lazy: loads a model
            from autotrack.trackers.deepsort import DeepSort, DeepSortConfig

            # The same meaning as for ByteTrack below: a track starts from a box scoring
            # --conf + 0.1 (else the detector's steady false positives become tracks), and
            # a lost object is re-found after up to max_time_lost missed frames (DeepSORT's
            # cascade reaches max_age - 1 of them, ByteTrack's buffer max_time_lost).
            return DeepSort(DeepSortConfig(
                min_confidence=self.conf,
                new_track_confidence=min(self.conf + 0.1, 1.0),
                max_age=int(frame_rate / 30.0 * self.track_buffer) + 1,
                report_detection_boxes=self.boxes == "detection",
            ), embedder=load_embedder(self.reid, device=device))
        return ByteTrack(ByteTrackConfig(
            track_high_thresh=self.conf,
            track_low_thresh=self.low_conf,
            new_track_thresh=min(self.conf + 0.1, 1.0),  # ByteTrack's det_thresh
            track_buffer=self.track_buffer,
            frame_rate=frame_rate,
            report_detection_boxes=self.boxes == "detection",
            velocity_noise_scale=velocity_noise_scale(frame_rate),
            # A low-score box over 1.2 times shorter than the track does not extend it
            # (the online doors take it): rendered TUD-Stadtmitte IDF1 78.7 -> 80.2, every
            # other TUD and MOT17 row of tools/bench/quality.py within 0.1 (one event on
            # one seed: a sliver that pulled a track off its person; docs/benchmarks.md (e)).
            second_max_shrink=1.2,
        ))

    def refine_config(self, frame_rate: float) -> RefineConfig | None:
        """The refinement settings at this frame rate, or None when refinement is off."""
        from autotrack.refine import RefineConfig  # lazy: argument parsing stays light

        if not self.refine:
            return None
        # Gaps filled along a local quadratic fit of each side's motion rather than a straight
        # line: as high or higher on every TUD and MOT17 input of tools/bench/quality.py
        # (up to +0.5 HOTA on the rendered scenes).
        return replace(RefineConfig(), interpolation="gaussian").at_frame_rate(frame_rate)

    def camera_motion_estimator(self) -> CameraMotion | None:
        """A fresh camera-shift estimator for one video, or None when the option is off."""
        from autotrack.camera_motion import CameraMotion  # lazy: imports OpenCV

        return CameraMotion() if self.camera_motion else None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrackingOptions:
        return cls(conf=args.conf, low_conf=args.low_conf, track_buffer=args.track_buffer,
                   boxes=args.boxes, smooth=args.smooth, refine=args.refine,
                   tracker_name=args.tracker, reid=args.reid,
                   camera_motion=args.camera_motion)


def bounded_float(low: float, high: float) -> Callable[[str], float]:
    """argparse type: a number in (low, high]."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not low < value <= high:
            raise argparse.ArgumentTypeError(f"{text} must lie in ({low:g}, {high:g}]")
        return value

    return parse


fraction = bounded_float(0.0, 1.0)


def add_tracking_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    defaults = TrackingOptions()
    parser.add_argument("--tracker", choices=TRACKERS, default=defaults.tracker_name,
                        help="bytetrack (default; motion only) or deepsort (motion and "
                             "appearance: follows people through crossings, slower)")
    parser.add_argument("--conf", type=fraction, default=defaults.conf,
                        help="score a detection needs to be matched first; a new track "
                             "needs 0.1 more (with bytetrack, lower ones down to --low-conf "
                             "still extend tracks; deepsort ignores them; "
                             f"default {defaults.conf})")
    parser.add_argument("--low-conf", type=fraction, default=defaults.low_conf,
                        help=f"lowest score a detection may have to be used at all "
                             f"(default {defaults.low_conf})")
    parser.add_argument("--track-buffer", type=int, default=defaults.track_buffer,
                        help="frames (at 30 fps; scaled to the video's rate) a lost object is "
                             f"remembered (default {defaults.track_buffer}: 2 s)")
    parser.add_argument("--boxes", choices=BOX_SOURCES, default=defaults.boxes,
                        help="box per frame: the matched detection (default) or the tracker's "
                             "Kalman estimate (smooth but lagging)")
    parser.add_argument("--smooth", type=float, default=defaults.smooth,
                        help="offline Gaussian smoothing of each track, sigma in frames; 0 off "
                             f"(default {defaults.smooth:g}: removes detector jitter, so CVAT "
                             "needs fewer keyframes)")
    parser.add_argument("--refine", action=argparse.BooleanOptionalAction,
                        default=defaults.refine,
                        help="offline (on by default; --no-refine turns it off): join tracks the "
                             "tracker broke where motion clearly agrees (never tracks seen on "
                             "the same frame) and fill missing frames along each side's motion "
                             "(up to 1.2 s)")
    parser.add_argument("--camera-motion", action=argparse.BooleanOptionalAction,
                        default=defaults.camera_motion,
                        help="on by default (--no-camera-motion turns it off): estimate the "
                             "camera's own motion from the frames (the background around the "
                             "detections) and move every track's prediction with it, for "
                             "panning or shaking cameras; a still camera is checked on every "
                             "4th frame only")
    parser.add_argument("--reid", default=defaults.reid,
                        help="appearance model for --tracker deepsort: person-reid-0248 "
                             "(default), person-reid-0287, a Re-ID .onnx, or a torchreid OSNet "
                             "checkpoint (.pth, .pth.tar; needs torch)")
