"""SAM2 as CVAT's interactor: clicks and/or a box on one image -> one mask and its score.

It runs what the official ``SAM2ImagePredictor`` runs (image encoder with the no-memory
embedding added, prompt encoder, mask decoder) without its fixed 1024-px feature sizes, so it
works at any ``image_size``. An annotator clicks several times on one frame and CVAT sends the
whole click list each time: the image embedding (the expensive part, seconds on a CPU) is kept
in a small LRU keyed by a hash of the image bytes, and every further click costs only the
decoder.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from autotrack.vos.base import InteractorResult, ObjectPrompt
from autotrack.vos.sam2.inputs import (
    check_frame,
    check_prompts,
    clicks,
    mask_logits,
    point_inputs,
    still_image_tensor,
)


@dataclass(frozen=True)
class _Embedding:
    image_embed: torch.Tensor  # (1, C, S/16, S/16), no-memory embedding added
    high_res_feats: tuple[torch.Tensor, ...]  # (1, 32, S/4, S/4), (1, 64, S/8, S/8)


class Sam2Interactor:
    """Implements :class:`autotrack.vos.base.Interactor` on a ``SAM2Base``.

    One click alone is ambiguous (a shirt or the person wearing it): the decoder gives three
    masks and the one it scores best is returned, as in SAM2's own examples. Several clicks or
    a box give one mask (with SAM2's fallback to the multimask head when that one is unstable).
    A mask in the prompt is fed to the decoder as the previous prediction. The score is the
    decoder's predicted IoU, in 0..1."""

    def __init__(self, model: nn.Module, *, cache_size: int = 4) -> None:
        if cache_size < 1:
            raise ValueError(f"cache_size must be at least 1, got {cache_size}")
        self.model = model
        self.cache_size = cache_size
        self._cache: OrderedDict[bytes, _Embedding] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def image_size(self) -> int:
        return int(self.model.image_size)

    @staticmethod
    def _key(image: np.ndarray) -> bytes:
        digest = hashlib.blake2b(digest_size=16)
        digest.update(repr(image.shape).encode())
        digest.update(np.ascontiguousarray(image).data)
        return digest.digest()

    def _embed(self, image: np.ndarray) -> _Embedding:
        model = self.model
        backbone_out = model.forward_image(still_image_tensor(image, self.image_size, self.device))
        _, feats, _, sizes = model._prepare_backbone_features(backbone_out)
        if model.directly_add_no_mem_embed:  # as SAM2ImagePredictor: a frame with no memory
            feats[-1] = feats[-1] + model.no_mem_embed
        maps = [f.permute(1, 2, 0).reshape(1, -1, *hw) for f, hw in zip(feats, sizes)]
        return _Embedding(maps[-1], tuple(maps[:-1]))

    def embedding(self, image: np.ndarray) -> _Embedding:
        """The image's embedding, from the LRU when this exact image was seen recently."""
        key = self._key(image)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        with torch.inference_mode():
            embedding = self._embed(image)
        with self._lock:
            self._cache[key] = embedding
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return embedding

    @property
    def cached_images(self) -> int:
        return len(self._cache)

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def segment(self, image: np.ndarray, prompt: ObjectPrompt) -> InteractorResult:
        hw = check_frame(image)
        (prompt,) = check_prompts([prompt], hw)
        embedding = self.embedding(image)
        return self._decode(embedding, prompt, hw)

    @torch.inference_mode()
    def _decode(self, embedding: _Embedding, prompt: ObjectPrompt,
                hw: tuple[int, int]) -> InteractorResult:
        model, size, device = self.model, self.image_size, self.device
        points = point_inputs(prompt, hw, size, device)
        coords = None if points is None else (points["point_coords"], points["point_labels"])
        masks = None
        if prompt.mask is not None:
            masks = mask_logits(prompt.mask, model.sam_prompt_encoder.mask_input_size[0], device)
        multimask = clicks(prompt) == 1 and prompt.mask is None
        sparse, dense = model.sam_prompt_encoder(points=coords, boxes=None, masks=masks)
        low_res, ious, _, _ = model.sam_mask_decoder(
            image_embeddings=embedding.image_embed,
            image_pe=model.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            repeat_image=False,
            high_res_features=list(embedding.high_res_feats),
        )
        best = int(torch.argmax(ious[0]))
        logits = F.interpolate(low_res[:, best:best + 1].float(), size=hw, mode="bilinear",
                               align_corners=False)
        mask = (logits[0, 0] > 0).cpu().numpy()
        score = float(np.clip(ious[0, best].item(), 0.0, 1.0))
        return InteractorResult(mask=mask, score=score)
