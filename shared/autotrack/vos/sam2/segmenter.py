"""SAM2 as a streaming multi-object video segmenter with a fixed memory budget.

The official ``SAM2VideoPredictor`` loads the whole video and keeps every frame's features and
every output, so memory grows with the video (sam2#196, #258). Here the model's own building
blocks run one frame at a time (image encoder, then per object ``track_step``: memory attention
over its memory bank, mask decoder, memory encoder), and each object keeps exactly what SAM2
reads back on later frames:

- its conditioning frames (where a user prompted it), at most ``max_cond_frames``: the first
  is always kept, the oldest other one goes first;
- the spatial memories of its last ``num_maskmem - 1`` tracked frames (6 for every released
  config: SAM2 reads no older ones);
- the object pointers of its last ``max_obj_ptrs_in_encoder - 1`` tracked frames (15: small
  vectors, the ones SAM2 reads).

Spatial memories are stored in bfloat16, as the official predictor stores them. Nothing else
is kept between frames: no images, no image features, no outputs. A frame with no object and
no prompt only advances the frame index (the image encoder does not run).

Equivalence: with the same weights, prompts on the first frames and a video of at least 16
frames (SAM2 scales object-pointer positions by ``min(video length, 16)``; a stream has no
length, so it is taken as long), the mask logits equal the official predictor's. A prompt on
a frame where the object is already tracked corrects it as the official ``add_new_points_or_box``
does (the tracked mask is fed back with the clicks) and the frame becomes a conditioning frame
(the official ``add_all_frames_to_correct_as_cond=True``): a stream never comes back to it, so
the correction must last. Not reproduced: the official hole filling of the low-resolution masks
(``fill_hole_area=8``), which needs sam2's CUDA extension (without it the official predictor
skips it too), and the official predictor's retracking of earlier frames after a correction.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from autotrack.errors import InputError
from autotrack.vos.base import MemoryStats, ObjectPrompt
from autotrack.vos.sam2.inputs import (
    check_frame,
    check_prompts,
    mask_logits,
    mask_tensor,
    point_inputs,
    video_frame_tensor,
)

_MEMORY_DTYPE = torch.bfloat16  # as SAM2VideoPredictor stores spatial memories
_PREV_LOGIT_CLAMP = 32.0  # the official clamp on mask logits fed back with correction clicks


def _nbytes(tensor: torch.Tensor | None) -> int:
    return 0 if tensor is None else tensor.nelement() * tensor.element_size()


@dataclass
class _FrameMemory:
    """What one object keeps of one frame: its spatial memory and its object pointer, each
    dropped (None) once too old for SAM2 to read; the frame goes when both are gone."""

    features: torch.Tensor | None  # (1, mem_dim, S/16, S/16) bfloat16
    obj_ptr: torch.Tensor | None  # (1, hidden_dim)

    def as_output(self, pos_enc: list[torch.Tensor]) -> dict:
        features = None if self.features is None else self.features.float()
        return {"maskmem_features": features, "maskmem_pos_enc": pos_enc, "obj_ptr": self.obj_ptr}


@dataclass
class _ObjectMemory:
    cond: OrderedDict[int, _FrameMemory] = field(default_factory=OrderedDict)
    recent: OrderedDict[int, _FrameMemory] = field(default_factory=OrderedDict)


class Sam2Segmenter:
    """Implements :class:`autotrack.vos.base.VideoSegmenter` (see the module docstring).

    ``max_cond_frames`` bounds each object's prompted frames, ``max_objects`` the objects
    followed at once: with both, memory is bounded whatever the video length."""

    def __init__(self, model: nn.Module, *, max_cond_frames: int = 4,
                 max_objects: int = 32) -> None:
        if max_cond_frames < 1:
            raise ValueError(f"max_cond_frames must be at least 1, got {max_cond_frames}")
        if max_objects < 1:
            raise ValueError(f"max_objects must be at least 1, got {max_objects}")
        self.model = model
        self.max_cond_frames = int(max_cond_frames)
        self.max_objects = int(max_objects)
        self.num_maskmem = int(model.num_maskmem)
        self.max_obj_ptrs = (int(model.max_obj_ptrs_in_encoder)
                             if model.use_obj_ptrs_in_encoder else 1)
        self._objects: dict[int, _ObjectMemory] = {}
        self._pos_enc: list[torch.Tensor] | None = None  # the same for every memory
        self._frame_idx = 0

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def image_size(self) -> int:
        return int(self.model.image_size)

    @property
    def object_ids(self) -> list[int]:
        return list(self._objects)

    @property
    def frame_index(self) -> int:
        """Index the next frame will get (frames seen since the last reset)."""
        return self._frame_idx

    # -- the VideoSegmenter protocol ---------------------------------------------------------

    def step(self, image: np.ndarray,
             prompts: Sequence[ObjectPrompt] = ()) -> Mapping[int, np.ndarray]:
        return {oid: logits > 0 for oid, logits in self.step_logits(image, prompts).items()}

    def forget(self, object_id: int) -> None:
        self._objects.pop(object_id, None)

    def reset(self) -> None:
        self._objects.clear()
        self._pos_enc = None
        self._frame_idx = 0

    def memory_stats(self) -> MemoryStats:
        frames: set[int] = set()
        nbytes = sum(_nbytes(t) for t in self._pos_enc or ())
        for obj in self._objects.values():
            for store in (obj.cond, obj.recent):
                for t, mem in store.items():
                    if mem.features is not None:
                        frames.add(t)
                    nbytes += _nbytes(mem.features) + _nbytes(mem.obj_ptr)
        return MemoryStats(frames_kept=len(frames), feature_bytes=nbytes,
                           objects=len(self._objects))

    # -- one frame -----------------------------------------------------------------------------

    def step_logits(self, image: np.ndarray,
                    prompts: Sequence[ObjectPrompt] = ()) -> dict[int, np.ndarray]:
        """Like :meth:`step`, but SAM2's mask logits, (H, W) float32 (mask = logits > 0)."""
        hw = check_frame(image)
        prompts = check_prompts(prompts, hw)
        new = [p.object_id for p in prompts if p.object_id not in self._objects]
        if len(self._objects) + len(new) > self.max_objects:
            raise InputError(f"{len(self._objects) + len(new)} objects exceed this segmenter's "
                             f"max_objects={self.max_objects}; forget some first")
        if not self._objects and not prompts:  # nothing to follow: no encoder pass
            self._frame_idx += 1
            return {}
        by_id = {p.object_id: p for p in prompts}
        t = self._frame_idx
        with torch.inference_mode():
            backbone_out = self.model.forward_image(
                video_frame_tensor(image, self.image_size, self.device))
            _, feats, pos, sizes = self.model._prepare_backbone_features(backbone_out)
            frame = (feats, pos, sizes)
            low_res: dict[int, torch.Tensor] = {}
            for oid in [*self._objects, *new]:
                prompt = by_id.get(oid)
                if prompt is None:
                    low_res[oid] = self._track(oid, t, frame)
                else:
                    low_res[oid] = self._prompted(oid, t, frame, prompt, hw)
            out = {oid: F.interpolate(m, size=hw, mode="bilinear", align_corners=False)[0, 0]
                   .cpu().numpy() for oid, m in low_res.items()}
        self._frame_idx += 1
        return out

    def _output_dict(self, obj: _ObjectMemory) -> dict:
        pos = self._pos_enc or []
        return {"cond_frame_outputs": {t: m.as_output(pos) for t, m in obj.cond.items()},
                "non_cond_frame_outputs": {t: m.as_output(pos) for t, m in obj.recent.items()}}

    def _run(self, obj: _ObjectMemory | None, t: int, frame, *, init: bool,
             points=None, mask=None, prev_logits=None, encode: bool = False) -> dict:
        feats, pos, sizes = frame
        return self.model.track_step(
            frame_idx=t,
            is_init_cond_frame=init,
            current_vision_feats=feats,
            current_vision_pos_embeds=pos,
            feat_sizes=sizes,
            point_inputs=points,
            mask_inputs=mask,
            output_dict=self._output_dict(obj or _ObjectMemory()),
            # a stream has no length: as a video of at least max_obj_ptrs frames
            num_frames=max(self.max_obj_ptrs, t + 1),
            run_mem_encoder=encode,
            prev_sam_mask_logits=prev_logits,
        )

    def _track(self, oid: int, t: int, frame) -> torch.Tensor:
        """A frame without a prompt for this object: follow it from its memory."""
        obj = self._objects[oid]
        out = self._run(obj, t, frame, init=False, encode=True)
        self._remember(obj.recent, t, out["maskmem_features"], out["maskmem_pos_enc"],
                       out["obj_ptr"])
        self._evict_recent(obj, t)
        return out["pred_masks"]

    def _prompted(self, oid: int, t: int, frame, prompt: ObjectPrompt,
                  hw: tuple[int, int]) -> torch.Tensor:
        """A prompted frame: a new object starts here, a known one is corrected here."""
        size, device = self.image_size, self.device
        obj = self._objects.get(oid)
        init = obj is None
        points = point_inputs(prompt, hw, size, device)
        mask = prev = None
        if points is None:  # a mask alone: it is the output, as the official add_new_mask
            mask = mask_tensor(prompt.mask, size, device)
        elif prompt.mask is not None:  # clicks refining a given mask
            prev = mask_logits(prompt.mask, size, device)
        elif not init:  # correction clicks on the mask SAM2 tracks here
            tracked = self._run(obj, t, frame, init=False)["pred_masks"]
            prev = tracked.clamp(-_PREV_LOGIT_CLAMP, _PREV_LOGIT_CLAMP)
        out = self._run(obj, t, frame, init=init, points=points, mask=mask, prev_logits=prev)
        # memory of a prompted frame: encoded from the upsampled low-res logits, binarised,
        # as the official propagate_in_video_preflight encodes what the user saw
        high_res = F.interpolate(out["pred_masks"], size=(size, size), mode="bilinear",
                                 align_corners=False)
        features, pos_enc = self.model._encode_new_memory(
            current_vision_feats=frame[0], feat_sizes=frame[2], pred_masks_high_res=high_res,
            object_score_logits=out["object_score_logits"], is_mask_from_pts=True)
        if obj is None:
            obj = self._objects[oid] = _ObjectMemory()
        obj.recent.pop(t, None)
        self._remember(obj.cond, t, features, pos_enc, out["obj_ptr"])
        self._evict_cond(obj, t)
        return out["pred_masks"]

    def _remember(self, store: OrderedDict[int, _FrameMemory], t: int,
                  features: torch.Tensor | None, pos_enc: list[torch.Tensor] | None,
                  obj_ptr: torch.Tensor) -> None:
        if self._pos_enc is None and pos_enc is not None:
            self._pos_enc = [p[:1].clone() for p in pos_enc]
        if features is not None:
            features = features.to(_MEMORY_DTYPE)
        store[t] = _FrameMemory(features=features, obj_ptr=obj_ptr.clone())

    def _evict_cond(self, obj: _ObjectMemory, t: int) -> None:
        """Keep the first prompted frame and the latest others; an evicted one still within
        reach of the recent window stays there, as SAM2 reads an unselected one."""
        while len(obj.cond) > self.max_cond_frames:
            victim = list(obj.cond)[1]
            obj.recent[victim] = obj.cond.pop(victim)
            obj.recent = OrderedDict(sorted(obj.recent.items()))
        self._evict_recent(obj, t)

    def _evict_recent(self, obj: _ObjectMemory, t: int) -> None:
        """After frame t, frame t + 1 reads spatial memories of frames >= t + 1 - (num_maskmem - 1)
        and pointers of frames >= t + 1 - (max_obj_ptrs - 1): drop the rest, and a frame once
        neither is left (either window may be the longer one)."""
        oldest_features = t + 2 - self.num_maskmem
        oldest_ptr = t + 2 - self.max_obj_ptrs
        for frame in list(obj.recent):
            mem = obj.recent[frame]
            if frame < oldest_features:
                mem.features = None
            if frame < oldest_ptr:
                mem.obj_ptr = None
            if mem.features is None and mem.obj_ptr is None:
                del obj.recent[frame]
