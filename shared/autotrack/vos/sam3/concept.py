"""SAM3's concept tracking, streaming: every object matching a text prompt, with an id that
persists from frame to frame.

SAM3's own video model (``Sam3VideoInference``) loads the whole video before it starts and
keeps per-frame state for all of it, so it cannot serve a stream in a fixed budget. This
tracker keeps what association needs and nothing more: SAM3's detections on each frame (the
image model, through :class:`Sam3TextDetector`) are matched to the objects of the previous
frame by mask IoU, prompt by prompt, with SAM3 video's own rules: detections under
``keep_score`` are dropped, a match needs IoU above ``match_iou``, a new object needs
``new_object_score`` and must not overlap an object of its prompt already on the frame by
more than ``duplicate_iou``, and an object unseen for ``max_missed`` frames is retired.
Memory is one bit-packed mask per object, at most ``max_objects`` of them: one frame's masks,
never more. What this loses against SAM3's video model: its memory tracker, which carries an
object through frames where the detector misses it; here such an object has an empty mask
until the detector finds it again (within ``max_missed`` frames, under the same id).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from autotrack.assignment import linear_assignment
from autotrack.detectors.base import check_frame
from autotrack.errors import InputError
from autotrack.vos.base import MemoryStats, ObjectPrompt
from autotrack.vos.sam3.detector import Sam3TextDetector, build_sam3_text_detector

# SAM3 video's defaults (sam3.model_builder.build_sam3_video_model)
KEEP_SCORE = 0.5  # score_threshold_detection
NEW_OBJECT_SCORE = 0.7  # new_det_thresh
MATCH_IOU = 0.1  # assoc_iou_thresh
DUPLICATE_IOU = 0.1  # det_nms_thresh
MAX_MISSED = 30  # max_trk_keep_alive
MAX_OBJECTS = 64

__all__ = ["ConceptOptions", "Sam3ConceptTracker", "build_sam3_concept_tracker"]


@dataclass(frozen=True)
class ConceptOptions:
    """When a detection continues an object, starts one, and when an object is retired."""

    keep_score: float = KEEP_SCORE
    new_object_score: float = NEW_OBJECT_SCORE
    match_iou: float = MATCH_IOU
    duplicate_iou: float = DUPLICATE_IOU
    max_missed: int = MAX_MISSED
    max_objects: int = MAX_OBJECTS

    def __post_init__(self) -> None:
        for name in ("keep_score", "new_object_score", "match_iou", "duplicate_iou"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie between 0 and 1, got {value}")
        if self.new_object_score < self.keep_score:
            raise ValueError("new_object_score must be at least keep_score")
        if self.max_missed < 0 or self.max_objects < 1:
            raise ValueError("max_missed must be >= 0 and max_objects >= 1")


@dataclass
class _Object:
    label_id: int
    bits: np.ndarray  # the last mask, np.packbits of the flattened (H, W) bool mask
    area: int
    missed: int = 0


class Sam3ConceptTracker:
    """:class:`autotrack.vos.base.VideoSegmenter` whose objects come from text prompts.

    ``object_labels`` names each object's prompt. Prompts given to :meth:`step` may only
    correct known objects with a mask (objects themselves appear from the text)."""

    def __init__(self, detector: Sam3TextDetector, options: ConceptOptions | None = None) -> None:
        self.detector = detector
        self.options = options or ConceptOptions()
        self._objects: dict[int, _Object] = {}
        self._labels: dict[int, str] = {}
        self._next_id = 1
        self._shape: tuple[int, int] | None = None

    @property
    def prompts(self) -> tuple[str, ...]:
        return self.detector.class_names

    @property
    def object_labels(self) -> Mapping[int, str]:
        return MappingProxyType(self._labels)

    def step(self, image: np.ndarray,
             prompts: Sequence[ObjectPrompt] = ()) -> dict[int, np.ndarray]:
        frame = check_frame(image)
        shape = frame.shape[:2]
        if self._shape is not None and shape != self._shape:
            raise InputError(f"frame is {shape[1]}x{shape[0]}, the video's frames are "
                             f"{self._shape[1]}x{self._shape[0]}; reset() for a new video")
        corrections = self._corrections(prompts, shape)
        self._shape = shape
        options = self.options
        detections = self.detector.detect_prompts(frame, min_score=options.keep_score)
        flat = detections.masks.reshape(len(detections), shape[0] * shape[1])
        bits = np.packbits(flat, axis=1)
        areas = flat.sum(axis=1)
        masks: dict[int, np.ndarray] = {}
        taken = np.zeros(len(detections), dtype=bool)
        for label_id in range(len(self.prompts)):
            ids = [i for i, obj in self._objects.items() if obj.label_id == label_id]
            if not ids:
                continue
            columns = np.flatnonzero((detections.class_ids == label_id) & (areas > 0))
            iou = _packed_iou([self._objects[i].bits for i in ids],
                              [self._objects[i].area for i in ids], bits[columns], areas[columns])
            matching = linear_assignment(1.0 - iou, 1.0 - options.match_iou) if len(columns) \
                else None
            for row, col in [] if matching is None else zip(matching.rows, matching.cols):
                obj, det = self._objects[ids[row]], columns[col]
                # a copy: a row view would keep this frame's whole packed matrix alive
                obj.bits, obj.area, obj.missed = bits[det].copy(), int(areas[det]), 0
                masks[ids[row]] = detections.masks[det]
                taken[det] = True
            for object_id in ids:
                # a corrected object is seen on this frame: never retired here
                if object_id not in masks and object_id not in corrections:
                    self._objects[object_id].missed += 1
        self._start_objects(detections, bits, areas, taken, masks)
        self._retire(masks)
        empty = np.zeros(shape, dtype=bool)
        result = {i: masks.get(i, empty) for i in self._objects}
        for object_id, mask in corrections.items():
            obj = self._objects[object_id]
            obj.bits, obj.area, obj.missed = np.packbits(mask.ravel()), int(mask.sum()), 0
            result[object_id] = mask
        return result

    def forget(self, object_id: int) -> None:
        self._objects.pop(object_id, None)
        self._labels.pop(object_id, None)

    def reset(self) -> None:
        self._objects.clear()
        self._labels.clear()
        self._shape = None

    def memory_stats(self) -> MemoryStats:
        held = sum(obj.bits.nbytes for obj in self._objects.values())
        return MemoryStats(frames_kept=int(bool(self._objects)), feature_bytes=held,
                           objects=len(self._objects))

    def _start_objects(self, detections: Any, bits: np.ndarray, areas: np.ndarray,
                       taken: np.ndarray, masks: dict[int, np.ndarray]) -> None:
        """Unmatched confident detections become objects, best first, unless they overlap
        an object of the same prompt on this frame (SAM3 video's NMS among detections)."""
        options = self.options
        placed: dict[int, list[int]] = {}  # prompt -> objects with a mask on this frame
        for object_id in masks:
            placed.setdefault(self._objects[object_id].label_id, []).append(object_id)
        fresh = np.flatnonzero(~taken & (detections.scores >= options.new_object_score)
                               & (areas > 0))
        for det in fresh[np.argsort(-detections.scores[fresh], kind="stable")]:
            if len(self._objects) >= options.max_objects:
                break
            label_id = int(detections.class_ids[det])
            rivals = [self._objects[i] for i in placed.get(label_id, [])]
            if rivals:
                overlap = _packed_iou([bits[det]], [areas[det]],
                                      np.stack([obj.bits for obj in rivals]),
                                      np.asarray([obj.area for obj in rivals]))
                if overlap.max() > options.duplicate_iou:
                    continue
            object_id = self._next_id
            self._next_id += 1
            self._objects[object_id] = _Object(label_id, bits[det].copy(), int(areas[det]))
            self._labels[object_id] = self.detector.class_names[label_id]
            masks[object_id] = detections.masks[det]
            placed.setdefault(label_id, []).append(object_id)

    def _retire(self, masks: dict[int, np.ndarray]) -> None:
        for object_id in [i for i, obj in self._objects.items()
                          if obj.missed > self.options.max_missed]:
            self.forget(object_id)
            masks.pop(object_id, None)

    def _corrections(self, prompts: Sequence[ObjectPrompt],
                     shape: tuple[int, int]) -> dict[int, np.ndarray]:
        corrections = {}
        for prompt in prompts:
            if prompt.object_id not in self._objects:
                raise InputError(
                    f"object {prompt.object_id} is not tracked: a concept tracker's objects "
                    f"come from its text prompts ({', '.join(self.prompts)})")
            if prompt.mask is None or len(prompt.points) or prompt.box is not None:
                raise InputError(f"object {prompt.object_id}: a concept tracker takes a "
                                 "corrected mask, not clicks or a box")
            if prompt.mask.shape != shape:
                raise InputError(f"object {prompt.object_id}: mask is {prompt.mask.shape}, "
                                 f"the frame {shape}")
            corrections[prompt.object_id] = prompt.mask
        return corrections


def build_sam3_concept_tracker(
    texts: Iterable[str] | str,
    checkpoint: str | Path | None = None,
    *,
    config: Any = "official",
    image_size: int | None = None,
    device: str | None = None,
    bpe_path: str | Path | None = None,
    seed: int = 0,
    **options: Any,
) -> Sam3ConceptTracker:
    """A concept tracker for these prompts (label names); ``options`` are
    :class:`ConceptOptions` fields. Weights as :func:`build_sam3_image_model` finds them."""
    settings = ConceptOptions(**options)
    detector = build_sam3_text_detector(
        texts, checkpoint, config=config, image_size=image_size, device=device,
        min_score=settings.keep_score, bpe_path=bpe_path, seed=seed)
    return Sam3ConceptTracker(detector, settings)


def _packed_iou(rows: Sequence[np.ndarray], row_areas: Sequence[int], cols: np.ndarray,
                col_areas: np.ndarray) -> np.ndarray:
    """IoU of every pair of bit-packed masks: popcounts of AND, exact."""
    if not len(rows) or not len(cols):
        return np.zeros((len(rows), len(cols)))
    a = np.stack(rows)[:, None, :]
    inter = np.bitwise_count(a & cols[None, :, :]).sum(axis=2, dtype=np.int64)
    union = np.asarray(row_areas, dtype=np.int64)[:, None] + np.asarray(col_areas)[None, :] \
        - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)
