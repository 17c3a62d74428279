"""XMem as a streaming :class:`~autotrack.vos.base.VideoSegmenter`.

:class:`XMemProcessor` is the official ``inference/inference_core.py`` loop on tensors (the part
the parity fixture checks): every frame is key-encoded, segmented from memory, and every
``mem_every``-th frame (and every prompted frame) is value-encoded into the working memory;
the sensory memory is updated by the decoder every frame and deep-updated on memory frames.

:class:`XMemSegmenter` wraps it for (H, W, 3) uint8 BGR frames and
:class:`~autotrack.vos.base.ObjectPrompt` s. The frame is resized so its short side is
``size`` (480, as the official evaluation; ``size <= 0`` keeps the frame's size; a frame more
elongated than 4:1 is an :class:`~autotrack.errors.InputError`, before anything is allocated),
normalised with the ImageNet mean/std and padded to a multiple of 16; the probabilities go back
to the frame's size (bilinear), and each pixel belongs to the most likely of background and
objects, so masks never overlap.

Prompts. XMem starts and corrects objects from **masks**. A prompt's mask is used as given; a
box without a mask becomes a filled rectangle mask (a coarse start: XMem follows whatever
region it is given, so an interactor's mask is much better); clicks are ignored when a mask or
box is present, and a prompt with clicks only is a ``ValueError`` (run an interactor such as
SAM2 on the clicks first). A prompt for a known object replaces its mask on that frame; the
other objects keep their predicted masks there, outside the prompted pixels (as the official
code does with partial annotations).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from autotrack.errors import InputError
from autotrack.vos.base import MemoryStats, ObjectPrompt
from autotrack.vos.xmem.memory import MemoryBudget, XMemMemory
from autotrack.vos.xmem.network import XMem, aggregate

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
# the longest processed side, in short sides: frames more elongated than 4:1 are refused
# (normal video is at most 2.4:1), as the short side is scaled to ``size`` whatever the long
# side becomes (a 1x65535 frame would be 480 x 31,456,800)
MAX_ASPECT = 4


# -- frames and masks -----------------------------------------------------------------------

def processing_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """(h, w) with the short side at ``size`` (torchvision's ``Resize(size)`` rule, as the
    official reader); ``size <= 0`` keeps the frame's size. A frame whose long side would
    exceed ``MAX_ASPECT * size`` is an :class:`~autotrack.errors.InputError`."""
    if size <= 0:
        return height, width
    if height < 1 or width < 1 or max(height, width) > MAX_ASPECT * min(height, width):
        raise InputError(f"frame is {width}x{height}: XMem takes frames at most "
                         f"{MAX_ASPECT}:1 in aspect ratio")
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


def preprocess_frame(image_bgr: np.ndarray, shape: tuple[int, int]) -> torch.Tensor:
    """BGR uint8 (H, W, 3) -> normalised RGB float (3, h, w): to [0, 1], ImageNet mean/std,
    then a bilinear antialiased resize (the official reader's order)."""
    rgb = torch.from_numpy(np.ascontiguousarray(image_bgr[..., ::-1])).permute(2, 0, 1)
    x = rgb.float().div(255)
    mean = torch.tensor(_MEAN).view(3, 1, 1)
    std = torch.tensor(_STD).view(3, 1, 1)
    x = (x - mean) / std
    if tuple(x.shape[-2:]) != tuple(shape):
        x = F.interpolate(x[None], size=shape, mode="bilinear", align_corners=False,
                          antialias=True)[0]
    return x


def resize_masks(masks: np.ndarray, shape: tuple[int, int]) -> torch.Tensor:
    """(N, H, W) bool -> (N, h, w) float, nearest neighbour (as the official reader)."""
    t = torch.from_numpy(np.ascontiguousarray(masks)).float()
    if tuple(t.shape[-2:]) != tuple(shape):
        t = F.interpolate(t[None], size=shape, mode="nearest")[0]
    return t


def pad16(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Zero-pad the last two axes to multiples of 16, split evenly (official pad_divide_by)."""
    h, w = x.shape[-2:]
    dh, dw = -h % 16, -w % 16
    pad = (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2)
    return F.pad(x, pad), pad


def unpad(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    h, w = x.shape[-2:]
    return x[..., pad[2]:h - pad[3], pad[0]:w - pad[1]]


def prompt_mask(prompt: ObjectPrompt, height: int, width: int) -> np.ndarray:
    """The (H, W) bool mask a prompt gives XMem: its mask, else its box filled."""
    if prompt.mask is not None:
        if prompt.mask.shape != (height, width):
            raise ValueError(f"object {prompt.object_id}: mask is {prompt.mask.shape[::-1]} "
                             f"(w, h) but the frame is {(width, height)}")
        mask = prompt.mask
    elif prompt.box is not None:
        x1, y1, x2, y2 = prompt.box
        mask = np.zeros((height, width), bool)
        c1, r1 = max(int(np.floor(x1)), 0), max(int(np.floor(y1)), 0)
        c2, r2 = min(int(np.ceil(x2)), width), min(int(np.ceil(y2)), height)
        mask[r1:r2, c1:c2] = True
    else:
        raise ValueError(f"object {prompt.object_id}: XMem starts objects from a mask or a box, "
                         "not clicks; turn the clicks into a mask with an interactor (SAM2) first")
    if not mask.any():
        raise ValueError(f"object {prompt.object_id}: the prompt covers no pixel of the frame")
    return mask


# -- the inference loop on tensors ----------------------------------------------------------

class XMemProcessor:
    """The official inference loop: one video, objects numbered 0..n-1 in start order."""

    def __init__(self, network: XMem, budget: MemoryBudget = MemoryBudget()) -> None:
        self.network = network
        self.budget = budget
        self.clear()

    def clear(self) -> None:
        self.memory = XMemMemory(self.budget, self.network.dims.hidden_dim)
        self.t = -1
        self.last_mem_t = 0
        self.last_deep_t = -self.budget.deep_update_every
        self.num_objects = 0

    def forget(self, index: int) -> None:
        self.memory.forget(index)
        self.num_objects -= 1
        if self.num_objects == 0:
            self.clear()

    @torch.inference_mode()
    def step(self, image: torch.Tensor, mask: torch.Tensor | None = None,
             prompted: Sequence[int] = (), num_objects: int | None = None) -> torch.Tensor:
        """image (3, H, W) normalised; mask (num_objects, H, W) whose rows ``prompted`` hold
        this frame's prompts (the rows of new objects must be among them). Returns the
        probabilities (num_objects + 1, H, W), background first."""
        b = self.budget
        if mask is not None:
            self.num_objects = int(num_objects if num_objects is not None else mask.shape[0])
        self.t += 1
        image, pad = pad16(image)
        image = image.unsqueeze(0)
        mem_frame = self.t - self.last_mem_t >= b.mem_every or mask is not None
        segment = self.t > 0 and (mask is None or len(prompted) != self.num_objects)
        deep_sync = b.deep_update_every < 0
        deep = (mem_frame if deep_sync else self.t - self.last_deep_t >= b.deep_update_every)
        normal = not deep_sync or not deep

        key, shrinkage, selection, f16, f8, f4 = self.network.encode_key(
            image, need_shrinkage=mem_frame, need_selection=True)
        memory = self.memory
        prob = None
        if segment:
            readout = memory.match(key, selection).unsqueeze(0)
            hidden, prob = self.network.segment((f16, f8, f4), readout, memory.hidden,
                                                h_out=normal)
            prob = prob[0]
            if normal and hidden is not None:
                memory.hidden = hidden
        if mask is not None:
            mask, _ = pad16(mask)
            mask = mask.clone()
            if prob is not None:
                old = prob[1:]  # objects known before this frame
                old[:, mask.sum(0) > 0.5] = 0
                mask = mask.type_as(old)
                keep = [i for i in range(old.shape[0]) if i not in set(prompted)]
                mask[keep] = old[keep]
            prob = aggregate(mask, dim=0)
            memory.ensure_hidden(self.num_objects, key)
        if mem_frame:
            value, hidden = self.network.encode_value(image, f16, memory.hidden,
                                                      prob[1:].unsqueeze(0), deep_update=deep)
            memory.add(key, shrinkage, value, selection)
            self.last_mem_t = self.t
            if deep:
                memory.hidden = hidden
                self.last_deep_t = self.t
        return unpad(prob, pad)


# -- the VideoSegmenter -------------------------------------------------------------------

class XMemSegmenter:
    """Streaming XMem over BGR frames with a bounded memory (see the module docstring)."""

    def __init__(self, network: XMem, budget: MemoryBudget = MemoryBudget(), size: int = 480,
                 device: str | torch.device = "cpu", keep_probabilities: bool = False) -> None:
        self.device = torch.device(device)
        self.network = network.to(self.device).eval()
        self.size = int(size)
        if 0 < self.size < 32:
            raise ValueError(f"XMem size (short side) must be >= 32, or <= 0 for the frame's "
                             f"own size; got {size}")
        self.processor = XMemProcessor(self.network, budget)
        self._ids: list[int] = []
        self._frame_shape: tuple[int, int] | None = None
        # (n + 1, h, w) of the last frame, kept only with keep_probabilities (diagnostics,
        # tests): tens of MB per session with many objects
        self.keep_probabilities = bool(keep_probabilities)
        self.last_probabilities: torch.Tensor | None = None
        self._lock = threading.Lock()

    @property
    def budget(self) -> MemoryBudget:
        return self.processor.budget

    @property
    def object_ids(self) -> tuple[int, ...]:
        return tuple(self._ids)

    def step(self, image: np.ndarray,
             prompts: Sequence[ObjectPrompt] = ()) -> Mapping[int, np.ndarray]:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"frames must be (H, W, 3) uint8 BGR, got {image.shape} {image.dtype}")
        height, width = image.shape[:2]
        processing_shape(height, width, self.size)  # refuses extreme aspect ratios up front
        seen: set[int] = set()
        masks = []
        for prompt in prompts:
            if prompt.object_id in seen:
                raise ValueError(f"object {prompt.object_id}: two prompts on one frame")
            seen.add(prompt.object_id)
            masks.append(prompt_mask(prompt, height, width))
        with self._lock:
            if self._frame_shape is not None and self._frame_shape != (height, width):
                raise ValueError(f"frame is {width}x{height} but this video's frames are "
                                 f"{self._frame_shape[1]}x{self._frame_shape[0]}; reset() first")
            if not self._ids and not prompts:
                return {}
            self._frame_shape = (height, width)
            return self._step(image, prompts, masks)

    def _step(self, image: np.ndarray, prompts: Sequence[ObjectPrompt],
              masks: list[np.ndarray]) -> dict[int, np.ndarray]:
        height, width = image.shape[:2]
        shape = processing_shape(height, width, self.size)
        x = preprocess_frame(image, shape).to(self.device)
        mask = None
        prompted: list[int] = []
        if prompts:
            for prompt in prompts:
                if prompt.object_id not in self._ids:
                    self._ids.append(prompt.object_id)
            prompted = [self._ids.index(p.object_id) for p in prompts]
            full = np.zeros((len(self._ids), height, width), bool)
            full[prompted] = np.stack(masks)
            mask = resize_masks(full, shape).to(self.device)
        prob = self.processor.step(x, mask, prompted, len(self._ids))
        if self.keep_probabilities:
            self.last_probabilities = prob
        if prob.shape[-2:] != (height, width):
            prob = F.interpolate(prob[None], size=(height, width), mode="bilinear",
                                 align_corners=False)[0]
        labels = prob.argmax(0).cpu().numpy()
        return {obj: labels == i + 1 for i, obj in enumerate(self._ids)}

    def forget(self, object_id: int) -> None:
        """Drop one object and its memory; unknown ids are ignored. Forgetting the last object
        clears the whole memory (the next prompt starts a new video)."""
        with self._lock:
            if object_id not in self._ids:
                return
            index = self._ids.index(object_id)
            self._ids.pop(index)
            self.processor.forget(index)
            if not self._ids:
                self._frame_shape = None
                self.last_probabilities = None

    def reset(self) -> None:
        with self._lock:
            self.processor.clear()
            self._ids = []
            self._frame_shape = None
            self.last_probabilities = None

    def memory_stats(self) -> MemoryStats:
        """frames_kept: frames in the working memory (at most ``max_mid_term_frames``);
        feature_bytes: every memory tensor (working, long-term, sensory)."""
        memory = self.processor.memory
        return MemoryStats(frames_kept=memory.frames_kept, feature_bytes=memory.nbytes(),
                           objects=len(self._ids))

    @property
    def long_term_elements(self) -> int:
        return self.processor.memory.long.size
