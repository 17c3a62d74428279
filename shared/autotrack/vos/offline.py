"""Offline video segmentation: a :class:`VideoSegmenter` over a whole video -> mask tracks.

Frames stream through the segmenter once, in order; each prompt is fed on its own frame
(a new id starts an object there, a known id corrects it). Every object's masks become a
:class:`~autotrack.vos.mask_tracks.MaskTrack` whose keyframes are kept while the video runs
(a mask is kept only where it moved away from the last kept one, see
:mod:`autotrack.vos.mask_tracks`), so memory stays bounded by the segmenter's own budget
plus the kept keyframes, whatever the video's length. Objects a concept tracker (SAM3)
finds by itself are tracked the same way, labelled by its ``object_labels``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from autotrack.errors import InputError
from autotrack.vos.base import MemoryStats, VideoSegmenter
from autotrack.vos.mask_tracks import (
    DEFAULT_MASK_KEYFRAME_IOU,
    MaskKeyframeStats,
    MaskTrack,
    MaskTrackBuilder,
    mask_keyframe_stats,
)
from autotrack.vos.prompts import PromptFile

DEFAULT_LABEL = "object"


@dataclass(frozen=True)
class SegmentationResult:
    tracks: list[MaskTrack]
    frames_read: int
    width: int
    height: int
    seconds: float  # in the segmenter's step
    peak_memory: MemoryStats  # the largest frames_kept / feature_bytes seen, each on its own

    @property
    def keyframes(self) -> MaskKeyframeStats:
        return mask_keyframe_stats(self.tracks)

    @property
    def seconds_per_frame(self) -> float:
        return self.seconds / self.frames_read if self.frames_read else 0.0


def _labels_of(segmenter: VideoSegmenter) -> Mapping[int, str]:
    labels = getattr(segmenter, "object_labels", None)
    return labels if isinstance(labels, Mapping) else {}


def segment_frames(
    frames: Iterable[tuple[int, np.ndarray]],
    segmenter: VideoSegmenter,
    prompts: PromptFile | None,
    *,
    min_iou: float = DEFAULT_MASK_KEYFRAME_IOU,
    on_frame: Callable[[int], None] | None = None,
    max_frames: int | None = None,
    checked_size: tuple[int, int] | None = None,
) -> SegmentationResult:
    """Run ``segmenter`` over ``(index, BGR frame)`` pairs (indices 0, 1, 2, ... as
    :class:`~autotrack.video.FrameSource` yields them) feeding ``prompts`` on their frames.

    The segmenter is :meth:`~VideoSegmenter.reset` first. Without prompts the segmenter must
    find objects by itself (SAM3 concept tracking). The prompts are checked against the first
    frame's size unless they were already checked for it (``checked_size``: width, height)."""
    if not 0.0 < min_iou <= 1.0:
        raise InputError(f"mask keyframe IoU must be in (0, 1], got {min_iou}")
    segmenter.reset()
    labels = dict(prompts.labels) if prompts is not None else {}
    builders: dict[int, MaskTrackBuilder] = {}
    frames_read = 0
    height = width = 0
    seconds = 0.0
    peak_frames = peak_bytes = peak_objects = 0
    for index, image in frames:
        if max_frames is not None and index >= max_frames:
            break
        if index != frames_read:
            raise ValueError(f"frames must come in order from 0; got {index} after "
                             f"{frames_read - 1}")
        if frames_read == 0:
            height, width = image.shape[:2]
            if prompts is not None and checked_size != (width, height):
                prompts.check(width=width, height=height)
        entries = prompts.on_frame(index) if prompts is not None else []
        started = time.perf_counter()
        masks = segmenter.step(image, [e.prompt(height, width) for e in entries])
        seconds += time.perf_counter() - started
        stats = segmenter.memory_stats()
        peak_frames = max(peak_frames, stats.frames_kept)
        peak_bytes = max(peak_bytes, stats.feature_bytes)
        peak_objects = max(peak_objects, stats.objects)
        prompted = {e.object_id for e in entries}
        auto_labels = _labels_of(segmenter) if set(masks) - set(builders) else {}
        for object_id, mask in masks.items():
            builder = builders.get(object_id)
            if builder is None:
                label = labels.get(object_id) or auto_labels.get(object_id) or DEFAULT_LABEL
                builder = builders[object_id] = MaskTrackBuilder(
                    object_id, label, height, width, min_iou)
            builder.add(index, np.asarray(mask, dtype=bool), prompted=object_id in prompted)
        frames_read += 1
        if on_frame is not None:
            on_frame(index)
    if frames_read == 0:
        raise InputError("no frames could be decoded")
    if prompts is not None and prompts.frames and prompts.frames[-1] >= frames_read:
        late = next(e for e in prompts.entries if e.frame >= frames_read)
        raise InputError(f"{prompts.source}:{late.line}: object {late.object_id} is prompted "
                         f"on frame {late.frame} but the video has {frames_read} frames")
    tracks = [b.build(frames_read) for _, b in sorted(builders.items())]
    tracks = [t for t in tracks if t.keyframes]
    return SegmentationResult(tracks, frames_read, width, height, seconds,
                              MemoryStats(peak_frames, peak_bytes, peak_objects))


def check_video_prompts(source, prompts: PromptFile, *,
                        no_clicks_only: bool = False) -> tuple[int, int]:
    """Check ``prompts`` against a :class:`~autotrack.video.FrameSource`'s frame size and a
    frame folder's length (a video container's announced count is only an estimate; prompts
    past its real end fail after the run), before any model runs; returns the (width,
    height) checked, for :func:`segment_video`'s ``checked_size``."""
    info = source.info
    prompts.check(width=info.width, height=info.height,
                  frame_count=info.frame_count if source.path.is_dir() else None,
                  no_clicks_only=no_clicks_only)
    return info.width, info.height


def segment_video(source, segmenter: VideoSegmenter, prompts: PromptFile | None, *,
                  checked_size: tuple[int, int] | None = None,
                  **kwargs) -> SegmentationResult:
    """:func:`segment_frames` over a :class:`~autotrack.video.FrameSource` (or a path),
    with the prompts checked once, first (:func:`check_video_prompts`) unless the caller did
    (``checked_size``: what it returned)."""
    from autotrack.video import FrameSource

    if not isinstance(source, FrameSource):
        source = FrameSource(source)
    if prompts is not None and checked_size is None:
        checked_size = check_video_prompts(source, prompts)
    return segment_frames(iter(source), segmenter, prompts, checked_size=checked_size,
                          **kwargs)
