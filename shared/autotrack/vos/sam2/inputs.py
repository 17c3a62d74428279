"""Frames and prompts as SAM2 takes them, and the checks made before they reach the network.

Two resizes on purpose: the interactor resizes like the official ``SAM2ImagePredictor``
(bilinear with antialiasing on the float image), the video segmenter like the official
``SAM2VideoPredictor`` frame loader (PIL bicubic on the 8-bit image). Each then gives the same
numbers as its official counterpart, which is how the tests check them.

Prompt coordinates are frame pixels; SAM2 wants them on its square ``image_size`` grid, a box
as two leading points labelled 2 and 3 (how SAM2 is trained), clicks labelled 1 / 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from autotrack.errors import InputError
from autotrack.vos.base import ObjectPrompt

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, as SAM2 is trained
IMAGENET_STD = (0.229, 0.224, 0.225)
MASK_LOGIT = 10.0  # a binary mask as logits: +-10 (sigmoid 0.99995), as SAM2 does for mask input
_MAX_SIDE = 16384


def check_frame(image: np.ndarray) -> tuple[int, int]:
    """(H, W) of an (H, W, 3) uint8 BGR frame, or an InputError saying what is wrong."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
            or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise InputError(f"a frame must be an (H, W, 3) uint8 BGR array, got {shape} {dtype}")
    h, w = image.shape[:2]
    if not (0 < h <= _MAX_SIDE and 0 < w <= _MAX_SIDE):
        raise InputError(f"frame size {w}x{h} is out of range (1..{_MAX_SIDE} px a side)")
    return h, w


def _normalise(rgb01: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=rgb01.device)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=rgb01.device)
    return (rgb01 - mean[:, None, None]) / std[:, None, None]


def video_frame_tensor(image: np.ndarray, size: int, device: torch.device) -> torch.Tensor:
    """(1, 3, size, size) normalised RGB, resized as the official video frame loader does."""
    rgb = Image.fromarray(np.ascontiguousarray(image[..., ::-1]))
    resized = np.asarray(rgb.resize((size, size), Image.Resampling.BICUBIC))
    tensor = torch.from_numpy(resized.copy()).permute(2, 0, 1).float() / 255.0
    return _normalise(tensor.to(device))[None]


def still_image_tensor(image: np.ndarray, size: int, device: torch.device) -> torch.Tensor:
    """(1, 3, size, size) normalised RGB, resized as the official image predictor does."""
    rgb = torch.from_numpy(np.ascontiguousarray(image[..., ::-1])).permute(2, 0, 1)
    rgb = rgb.to(device).float()[None] / 255.0
    resized = F.interpolate(rgb, size=(size, size), mode="bilinear", align_corners=False,
                            antialias=True)
    return _normalise(resized[0])[None]


def check_prompts(prompts: Sequence[ObjectPrompt], frame_hw: tuple[int, int]) -> list[ObjectPrompt]:
    """The prompts, checked against the frame: one per object, points and box on the frame,
    masks of the frame's size. Boxes reaching past the frame edge are clipped to it."""
    h, w = frame_hw
    checked: list[ObjectPrompt] = []
    seen: set[int] = set()
    for prompt in prompts:
        if not isinstance(prompt, ObjectPrompt):
            raise InputError(f"a prompt must be an ObjectPrompt, got {type(prompt).__name__}")
        if prompt.object_id in seen:
            raise InputError(f"object {prompt.object_id}: two prompts on one frame; merge them")
        seen.add(prompt.object_id)
        pts = prompt.points
        if len(pts) and ((pts < 0).any() or (pts[:, 0] > w).any() or (pts[:, 1] > h).any()):
            raise InputError(f"object {prompt.object_id}: points must lie on the {w}x{h} frame")
        if prompt.mask is not None and prompt.mask.shape != (h, w):
            raise InputError(f"object {prompt.object_id}: mask is {prompt.mask.shape[1]}x"
                             f"{prompt.mask.shape[0]}, the frame {w}x{h}")
        if prompt.box is not None:
            x1, y1, x2, y2 = prompt.box
            box = (min(max(x1, 0.0), w), min(max(y1, 0.0), h),
                   min(max(x2, 0.0), w), min(max(y2, 0.0), h))
            if not (box[2] > box[0] and box[3] > box[1]):
                raise InputError(f"object {prompt.object_id}: box {prompt.box} is off the "
                                 f"{w}x{h} frame")
            if box != prompt.box:
                prompt = ObjectPrompt(prompt.object_id, prompt.points, prompt.point_labels,
                                      box, prompt.mask)
        checked.append(prompt)
    return checked


def point_inputs(prompt: ObjectPrompt, frame_hw: tuple[int, int], size: int,
                 device: torch.device) -> dict[str, torch.Tensor] | None:
    """SAM2's ``{"point_coords": (1, P, 2), "point_labels": (1, P)}``, box first; None if
    the prompt has neither clicks nor a box."""
    coords = torch.from_numpy(prompt.points).reshape(1, -1, 2)
    labels = torch.from_numpy(prompt.point_labels.astype(np.int32)).reshape(1, -1)
    if prompt.box is not None:
        box = torch.tensor(prompt.box, dtype=torch.float32).reshape(1, 2, 2)
        coords = torch.cat([box, coords], dim=1)
        labels = torch.cat([torch.tensor([[2, 3]], dtype=torch.int32), labels], dim=1)
    if coords.shape[1] == 0:
        return None
    h, w = frame_hw
    coords = coords / torch.tensor([w, h]) * size
    return {"point_coords": coords.to(device), "point_labels": labels.to(device)}


def clicks(prompt: ObjectPrompt) -> int:
    """How many clicks a prompt has; a box counts as two, as SAM2 counts it."""
    return len(prompt.points) + (2 if prompt.box is not None else 0)


def mask_tensor(mask: np.ndarray, size: int, device: torch.device) -> torch.Tensor:
    """(1, 1, size, size) float 0/1: the frame-size mask resized as the official
    ``add_new_mask`` resizes it (antialiased bilinear, then >= 0.5)."""
    tensor = torch.from_numpy(np.ascontiguousarray(mask, dtype=bool))[None, None].float()
    if tensor.shape[-2:] != (size, size):
        tensor = F.interpolate(tensor, size=(size, size), mode="bilinear",
                               align_corners=False, antialias=True)
        tensor = (tensor >= 0.5).float()
    return tensor.to(device)


def mask_logits(mask: np.ndarray, size: int, device: torch.device) -> torch.Tensor:
    """The mask as SAM2 logits (+-MASK_LOGIT) at ``size``: a mask fed to the decoder as the
    previous prediction, like the logits SAM2's own interactive loop feeds back."""
    return mask_tensor(mask, size, device) * (2 * MASK_LOGIT) - MASK_LOGIT
