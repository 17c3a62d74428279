"""Mask tracks: one object's masks over a video, kept as the few keyframes where it changes.

A segmenter gives a mask for every object on every frame; most of them differ from the
previous one by a few boundary pixels. A :class:`MaskTrack` keeps a keyframe only where the
mask moved away from the last *kept* one (IoU below ``min_iou``, default
:data:`DEFAULT_MASK_KEYFRAME_IOU`), where the object appears or disappears (an empty mask is
an ``outside`` keyframe), and where the user prompted it. Between keyframes the track shows
the last keyframe's mask, so every frame's mask is within ``min_iou`` of the model's own.

Why 0.95: a mask IoU of 0.95 is a boundary shift of about one pixel on a 40-pixel-wide
object, below what an annotator corrects; at 1.0 every frame is a keyframe (the model's
masks always jitter a few pixels), at 0.9 a walking person's legs visibly lag.

Keyframes are stored as CVAT run lengths over the mask's box (:func:`encode_cvat_mask`), so
a track costs bytes per keyframe, not a full bitmap per frame, on any video length.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from autotrack.masks import decode_cvat_mask, encode_cvat_mask, mask_to_polygon

DEFAULT_MASK_KEYFRAME_IOU = 0.95


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (H, W) bool masks; two empty masks are identical (1.0)."""
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


@dataclass(frozen=True)
class MaskKeyframe:
    """The track's mask from ``frame`` on: CVAT RLE (runs, then inclusive x1, y1, x2, y2)
    as int32, or None when the object is out of view (``outside``)."""

    frame: int
    rle: np.ndarray | None
    prompted: bool = False

    @property
    def outside(self) -> bool:
        return self.rle is None

    def mask(self, height: int, width: int) -> np.ndarray:
        """The (height, width) bool mask (all False when outside)."""
        if self.rle is None:
            return np.zeros((height, width), dtype=bool)
        return decode_cvat_mask(self.rle, height, width)

    def box(self) -> tuple[int, int, int, int] | None:
        """Inclusive pixel box (x1, y1, x2, y2) of the mask, None when outside."""
        return None if self.rle is None else tuple(int(v) for v in self.rle[-4:])


@dataclass(frozen=True)
class MaskTrack:
    """One object's keyframes, sorted by frame, shown up to ``end`` (exclusive).

    The first keyframe is where the object starts (its prompt, or where a concept
    tracker found it); each keyframe holds until the next one or ``end``."""

    object_id: int
    label: str
    keyframes: tuple[MaskKeyframe, ...]
    end: int
    height: int
    width: int

    def __post_init__(self) -> None:
        frames = [k.frame for k in self.keyframes]
        if frames != sorted(set(frames)):
            raise ValueError(f"object {self.object_id}: keyframes must have increasing frames")
        if frames and not frames[-1] < self.end:
            raise ValueError(f"object {self.object_id}: end {self.end} is not after the last "
                             f"keyframe {frames[-1]}")

    @property
    def start(self) -> int:
        return self.keyframes[0].frame if self.keyframes else self.end

    def spans(self) -> Iterable[tuple[int, int, MaskKeyframe]]:
        """(first, stop, keyframe) for each keyframe: it shows on frames first..stop-1."""
        stops = [k.frame for k in self.keyframes[1:]] + [self.end]
        for keyframe, stop in zip(self.keyframes, stops):
            yield keyframe.frame, stop, keyframe

    def keyframe_at(self, frame: int) -> MaskKeyframe | None:
        """The keyframe shown on ``frame`` (None before the track starts or from ``end``)."""
        if not self.start <= frame < self.end:
            return None
        frames = np.array([k.frame for k in self.keyframes])
        return self.keyframes[int(np.searchsorted(frames, frame, side="right")) - 1]

    def mask_at(self, frame: int) -> np.ndarray:
        keyframe = self.keyframe_at(frame)
        if keyframe is None:
            return np.zeros((self.height, self.width), dtype=bool)
        return keyframe.mask(self.height, self.width)

    @property
    def visible_frames(self) -> int:
        """Frames on which the track shows a (non-empty) mask."""
        return sum(stop - first for first, stop, k in self.spans() if not k.outside)


class MaskTrackBuilder:
    """Builds one :class:`MaskTrack` from per-frame masks, keeping keyframes as it goes
    (module docstring); holds only the last kept mask in full."""

    def __init__(self, object_id: int, label: str, height: int, width: int,
                 min_iou: float = DEFAULT_MASK_KEYFRAME_IOU) -> None:
        if not 0.0 < min_iou <= 1.0:
            raise ValueError(f"min_iou must be in (0, 1], got {min_iou}")
        self.object_id, self.label = object_id, label
        self.height, self.width, self.min_iou = height, width, min_iou
        self._keyframes: list[MaskKeyframe] = []
        self._last: np.ndarray | None = None  # the last kept mask; None when outside
        self._next_frame = 0

    def add(self, frame: int, mask: np.ndarray, *, prompted: bool = False) -> bool:
        """Record the object's mask on ``frame`` (frames strictly increasing); returns
        whether it became a keyframe."""
        if frame < self._next_frame:
            raise ValueError(f"object {self.object_id}: frame {frame} came after "
                             f"{self._next_frame - 1}")
        if mask.shape != (self.height, self.width):
            raise ValueError(f"object {self.object_id}: mask {mask.shape} on a "
                             f"{self.width}x{self.height} video")
        mask = np.asarray(mask, dtype=bool)
        visible = bool(mask.any())
        started = bool(self._keyframes)
        # A gap in the frames fed (the object was not reported) hides it in between.
        if started and frame > self._next_frame and self._last is not None:
            self._keyframes.append(MaskKeyframe(self._next_frame, None))
            self._last = None
        self._next_frame = frame + 1
        if started and not prompted:
            if not visible and self._last is None:
                return False
            if visible and self._last is not None and mask_iou(mask, self._last) >= self.min_iou:
                return False
        if not started and not visible and not prompted:
            return False  # nothing to show yet
        rle = np.asarray(encode_cvat_mask(mask), dtype=np.int32) if visible else None
        self._keyframes.append(MaskKeyframe(frame, rle, prompted))
        self._last = mask.copy() if visible else None
        return True

    def build(self, end: int) -> MaskTrack:
        """The track, shown up to frame ``end`` (exclusive; the video's frame count)."""
        keyframes = list(self._keyframes)
        if keyframes and self._next_frame < end and self._last is not None:
            keyframes.append(MaskKeyframe(self._next_frame, None))  # stopped being reported
        return MaskTrack(self.object_id, self.label, tuple(keyframes), end, self.height,
                         self.width)


@dataclass(frozen=True)
class MaskKeyframeStats:
    """Keyframes kept against frames with a visible mask (as :class:`KeyframeStats`)."""

    tracks: int
    visible_frames: int
    keyframes: int  # visible keyframes
    outside_keyframes: int

    @property
    def ratio(self) -> float:
        return self.keyframes / self.visible_frames if self.visible_frames else 0.0

    def __str__(self) -> str:
        return (f"{self.keyframes} mask keyframes for {self.visible_frames} frames with a mask "
                f"({100 * self.ratio:.1f}%) in {self.tracks} tracks, "
                f"{self.outside_keyframes} outside markers")


def mask_keyframe_stats(tracks: Sequence[MaskTrack]) -> MaskKeyframeStats:
    outside = sum(k.outside for t in tracks for k in t.keyframes)
    total = sum(len(t.keyframes) for t in tracks)
    return MaskKeyframeStats(len(tracks), sum(t.visible_frames for t in tracks),
                             total - outside, outside)


def polygon_keyframes(track: MaskTrack, frame_count: int,
                       tolerance: float) -> list[tuple[int, list[float], bool]]:
    """(frame index, flat points rounded to 0.01 px, outside) keyframes of ``track`` as a
    CVAT polygon track: a keyframe where the outline changes, the old outline held up to the
    frame before a change (CVAT would otherwise morph it), an outside keyframe where the
    object leaves. Frames from ``frame_count`` on are left out."""
    shapes: list[tuple[int, list[float], bool]] = []
    held: list[float] | None = None  # the outline CVAT shows now; None when hidden
    for first, _stop, keyframe in track.spans():
        if first >= frame_count:
            break
        polygon = None
        if not keyframe.outside:
            flat = mask_to_polygon(keyframe.mask(track.height, track.width), tolerance)
            polygon = None if flat is None else [round(v, 2) + 0.0 for v in flat]
        if polygon is None:
            if held is not None:
                shapes.append((first, held, True))  # same points: CVAT holds up to here
                held = None
            continue
        if polygon == held:
            continue
        if held is not None and shapes[-1][0] < first - 1:
            shapes.append((first - 1, held, False))  # hold the old outline until here
        shapes.append((first, polygon, False))
        held = polygon
    return shapes
