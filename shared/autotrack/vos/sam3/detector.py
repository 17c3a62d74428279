"""SAM3 as a detector whose classes are text prompts: "car" gives a mask for every car.

Each frame goes once through SAM3's image backbone, then each prompt through its text encoder
and grounding heads: exactly ``sam3.model.sam3_image_processor.Sam3Processor``'s
``set_image`` and ``set_text_prompt``, whose post-processing (score times presence, the
confidence cut, boxes and masks resized to the frame) is the package's own. The result is an
:class:`autotrack.detections.Detections` whose ``class_ids`` index the prompts, so everything
that serves a segmentation detector (CVAT functions, trackers) serves SAM3 unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autotrack.detections import Detections
from autotrack.detectors.base import check_frame
from autotrack.errors import InputError

DEFAULT_MIN_SCORE = 0.3  # lowest score reported: SAM3's own processor default is 0.5
MAX_PROMPTS = 256
MAX_PROMPT_CHARS = 200

__all__ = ["DEFAULT_MIN_SCORE", "Sam3TextDetector", "build_sam3_text_detector", "prompt_texts"]


def prompt_texts(texts: Iterable[str] | str) -> tuple[str, ...]:
    """Prompts as given (``"car,person"`` or a list), stripped, each once, none empty."""
    items = texts.split(",") if isinstance(texts, str) else list(texts)
    prompts = []
    for item in items:
        if not isinstance(item, str):
            raise InputError(f"a text prompt must be a string, got {type(item).__name__}")
        text = " ".join(item.split())
        if not text:
            raise InputError("a text prompt is empty")
        if len(text) > MAX_PROMPT_CHARS:
            raise InputError(f"text prompt {text[:20]!r}... is {len(text)} characters, over "
                             f"{MAX_PROMPT_CHARS}")
        if text in prompts:
            raise InputError(f"text prompt {text!r} is given twice")
        prompts.append(text)
    if not prompts:
        raise InputError("no text prompts: give at least one label name")
    if len(prompts) > MAX_PROMPTS:
        raise InputError(f"{len(prompts)} text prompts, over the limit of {MAX_PROMPTS}")
    return tuple(prompts)


class Sam3TextDetector:
    """One SAM3 image model and its prompts; :meth:`detect` implements
    :class:`autotrack.detectors.Detector` with ``class_names`` the prompts."""

    task = "segment"  # masks, as autotrack.detectors.base.makes_masks reads it

    def __init__(self, model: Any, texts: Iterable[str] | str, *, image_size: int,
                 device: str | None = None, min_score: float = DEFAULT_MIN_SCORE) -> None:
        from sam3.model.sam3_image_processor import Sam3Processor

        if not 0.0 <= float(min_score) <= 1.0:
            raise ValueError(f"min_score must lie between 0 and 1, got {min_score}")
        self.model = model
        self.device = device or "cpu"
        self.min_score = float(min_score)
        self.processor = Sam3Processor(model, resolution=int(image_size), device=self.device,
                                       confidence_threshold=self.min_score)
        self.class_names = prompt_texts(texts)
        tokenizer = model.backbone.language_backbone.tokenizer
        context = model.backbone.language_backbone.context_length
        for text in self.class_names:  # SAM3 would silently cut a longer one
            tokens = len(tokenizer.encode(text)) + 2
            if tokens > context:
                raise InputError(f"text prompt {text!r} is {tokens} tokens; SAM3 reads at "
                                 f"most {context}")

    def detect(self, frame_bgr: np.ndarray) -> Detections:
        return self.detect_prompts(frame_bgr)

    def detect_prompts(self, frame_bgr: np.ndarray, prompt_ids: Sequence[int] | None = None,
                       *, min_score: float | None = None) -> Detections:
        """Instances of the chosen prompts (indices into ``class_names``; None: all) scoring
        at least ``min_score`` (default the detector's), best first within each prompt."""
        import torch

        frame = check_frame(frame_bgr)
        ids = range(len(self.class_names)) if prompt_ids is None else list(prompt_ids)
        if any(not 0 <= int(i) < len(self.class_names) for i in ids):
            raise InputError(f"prompt ids must lie in 0..{len(self.class_names) - 1}")
        threshold = self.min_score if min_score is None else max(float(min_score), 0.0)
        height, width = frame.shape[:2]
        if not len(ids):
            return _empty(height, width)
        rgb = torch.from_numpy(np.ascontiguousarray(frame[:, :, ::-1].transpose(2, 0, 1)))
        self.processor.confidence_threshold = threshold
        state = self.processor.set_image(rgb)
        parts = []
        for prompt_id in ids:
            state = self.processor.set_text_prompt(self.class_names[int(prompt_id)], state)
            parts.append(_instances(state, int(prompt_id), width, height))
            for key in ("masks", "masks_logits", "boxes", "scores"):
                state.pop(key, None)  # full-size masks: free them before the next prompt
        boxes, scores, class_ids, masks = (np.concatenate(column) for column in zip(*parts))
        return Detections(boxes, scores, class_ids, masks)


def build_sam3_text_detector(
    texts: Iterable[str] | str,
    checkpoint: str | Path | None = None,
    *,
    config: Any = "official",
    image_size: int | None = None,
    device: str | None = None,
    min_score: float = DEFAULT_MIN_SCORE,
    bpe_path: str | Path | None = None,
    seed: int = 0,
) -> Sam3TextDetector:
    """SAM3 with these prompts; weights and vocabulary as :func:`build_sam3_image_model`
    finds them. ``image_size`` overrides the config's input side (a multiple of 14 whose
    token grid the ViT window divides: 336, 672 or 1008 for the official model)."""
    from autotrack.vos.sam3.model import Sam3Config, build_sam3_image_model

    sam3_config = Sam3Config.named(config)
    if image_size is not None:
        try:
            sam3_config = sam3_config.with_image_size(int(image_size))
        except ValueError as exc:
            raise InputError(f"bad SAM3 image_size {image_size}: {exc}") from None
    prompts = prompt_texts(texts)  # refuse bad prompts before building a large model
    model = build_sam3_image_model(sam3_config, checkpoint=checkpoint, bpe_path=bpe_path,
                                   device=device, seed=seed)
    return Sam3TextDetector(model, prompts, image_size=sam3_config.image_size, device=device,
                            min_score=min_score)


def _instances(state: dict, prompt_id: int, width: int, height: int) -> tuple[np.ndarray, ...]:
    scores = state["scores"].float().cpu().numpy().astype(np.float64)
    order = np.argsort(-scores, kind="stable")
    boxes = state["boxes"].float().cpu().numpy().astype(np.float64)[order]
    np.clip(boxes, 0, [width, height, width, height], out=boxes)
    masks = state["masks"].cpu().numpy().reshape(len(scores), height, width)[order]
    return boxes, np.clip(scores[order], 0.0, 1.0), np.full(len(scores), prompt_id), masks


def _empty(height: int, width: int) -> Detections:
    return Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64),
                      np.zeros((0, height, width), dtype=bool))
