"""SAM3 as a detector whose classes are text prompts: "car" gives a mask for every car.

Each frame goes once through SAM3's image backbone, then each prompt through its text encoder
and grounding heads: ``sam3.model.sam3_image_processor.Sam3Processor``'s ``set_image`` and
``set_text_prompt``, with its post-processing (score times presence, the confidence cut,
boxes and masks resized to the frame) done here in the same way but bounded: only the
best-scoring instances over all prompts are resized to the frame, at most
:data:`MAX_INSTANCES` and at most :data:`MAX_MASK_BYTES` of frame-sized masks (the
package resizes every instance over the cut: a low threshold on a 4K frame took it past
8 GiB). The result is an :class:`autotrack.detections.Detections` whose ``class_ids`` index
the prompts, so everything that serves a segmentation detector (CVAT functions, trackers)
serves SAM3 unchanged.
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
MAX_INSTANCES = 100  # instances per frame over all prompts, best first
MAX_MASK_BYTES = 256 * 2**20  # frame-sized boolean masks per frame (32 at 4K UHD)
_RESIZE_CHUNK = 8  # masks resized to the frame at a time (float32 while resizing)

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
        state = self.processor.set_image(rgb)
        keep = min(MAX_INSTANCES, max(1, MAX_MASK_BYTES // (height * width)))
        best: list[tuple] = []  # one part: scores, prompt ids, boxes, low-res logits
        for prompt_id in ids:
            found = self._ground(state, self.class_names[int(prompt_id)], threshold)
            best = _best([*best, (*found[:1], torch.full_like(found[0], int(prompt_id)),
                                  *found[1:])], keep)
        if not best:
            return _empty(height, width)
        scores, prompt_of, boxes, logits = best[0]
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        boxes = _cxcywh_to_xyxy(boxes.float().cpu()) * scale
        masks = np.zeros((len(scores), height, width), dtype=bool)
        for start in range(0, len(scores), _RESIZE_CHUNK):
            chunk = logits[start:start + _RESIZE_CHUNK].unsqueeze(1)
            resized = torch.nn.functional.interpolate(chunk, (height, width), mode="bilinear",
                                                      align_corners=False)
            masks[start:start + len(chunk)] = (resized.sigmoid() > 0.5)[:, 0].cpu().numpy()
        # best first within each prompt, prompts in the order asked
        rank = {int(p): k for k, p in enumerate(ids)}
        order = sorted(range(len(scores)), key=lambda i: (rank[int(prompt_of[i])],
                                                           -float(scores[i]), i))
        boxes = boxes.numpy().astype(np.float64)[order]
        np.clip(boxes, 0, [width, height, width, height], out=boxes)
        scores = np.clip(scores.float().cpu().numpy().astype(np.float64)[order], 0.0, 1.0)
        class_ids = prompt_of.cpu().numpy().astype(np.int64)[order]
        return Detections(boxes, scores, class_ids, masks[order])

    def _ground(self, state: dict, text: str, threshold: float) -> tuple[Any, ...]:
        """One prompt's instances over ``threshold``: scores, boxes (cx, cy, w, h in 0..1)
        and low-resolution mask logits, as ``Sam3Processor._forward_grounding`` computes
        them before resizing."""
        import torch

        with torch.inference_mode():
            state["backbone_out"].update(self.model.backbone.forward_text([text],
                                                                          device=self.device))
            if "geometric_prompt" not in state:
                state["geometric_prompt"] = self.model._get_dummy_prompt()
            out = self.model.forward_grounding(
                backbone_out=state["backbone_out"], find_input=self.processor.find_stage,
                geometric_prompt=state["geometric_prompt"], find_target=None)
            presence = out["presence_logit_dec"].sigmoid().unsqueeze(1)
            probs = (out["pred_logits"].sigmoid() * presence).squeeze(-1)
            kept = probs > threshold
            return probs[kept], out["pred_boxes"][kept], out["pred_masks"][kept]


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


def _best(parts: list[tuple], keep: int) -> list[tuple]:
    """The ``keep`` best-scoring instances of ``parts`` (columns: scores, prompt ids, boxes,
    logits) as one part; ties keep the earlier prompt's instance first."""
    import torch

    parts = [part for part in parts if len(part[0])]
    if not parts:
        return []
    columns = [torch.cat(column) for column in zip(*parts)]
    order = torch.argsort(columns[0], descending=True, stable=True)[:keep]
    return [tuple(column[order] for column in columns)]


def _cxcywh_to_xyxy(boxes):
    import torch

    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)


def _empty(height: int, width: int) -> Detections:
    return Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64),
                      np.zeros((0, height, width), dtype=bool))
