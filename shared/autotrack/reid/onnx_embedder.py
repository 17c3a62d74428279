"""Person Re-ID embeddings on onnxruntime: OpenVINO's person-reidentification-retail models.

The exports in the registry (``person-reid-0248``, ``person-reid-0287``) take one NHWC
[1, 256, 128, 3] BGR image of raw 0..255 pixels (their first layers normalise it) and
return a 256-d embedding to compare by cosine. They were exported for batch 1, so at load
the graph is given a free batch dimension (onnx_batch.py) and the edit is checked: a batch
of random images must give exactly what one-by-one runs give. Should a model fail that
check, it runs one crop per call instead (``batched`` is then False).

Layout (NHWC or NCHW) and crop size come from the model's input shape; channel order and
pixel normalisation are options for other Re-ID exports (torchreid's ONNX exports want RGB,
pixels / 255, ImageNet mean and std).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from autotrack.errors import AutotrackError
from autotrack.models import find_spec, resolve_model, sha256_of
from autotrack.reid.base import CropEmbedder
from autotrack.reid.onnx_batch import ProtobufError, make_batch_dynamic

DEFAULT_INPUT_HW = (256, 128)  # used only when the export leaves height and width free
DEFAULT_MAX_BATCH = 128  # crops per inference call; a frame with more runs in chunks


class NotReidModelError(AutotrackError):
    """The ONNX file loads but does not look like an image embedder."""


class OnnxReidEmbedder(CropEmbedder):
    """Re-ID embedder on an ONNX model; all crops of a frame go through one inference call."""

    def __init__(
        self,
        model_path: str | Path = "person-reid-0248",
        *,
        providers: Sequence[str] | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
        rgb: bool = False,
        scale: float = 1.0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        memory_pattern: bool = True,
    ) -> None:
        """``memory_pattern``: onnxruntime's planned buffers per input shape (its default);
        off, a long-lived server that sees every batch size keeps no buffer per shape."""
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.model_path = resolve_model(model_path)
        spec = find_spec(self.model_path.name)
        # Galleries saved with one model must never be compared with another's embeddings,
        # so the name carries the file's digest, not just its (renameable) file name.
        digest = sha256_of(self.model_path)[:16]
        self.name = f"{spec.name if spec else self.model_path.name}@{digest}"
        self._rgb = rgb
        self._scale = float(scale)
        self._mean = None if mean is None else np.asarray(mean, dtype=np.float32)
        self._std = None if std is None else np.asarray(std, dtype=np.float32)
        self._providers = list(providers) if providers else ["CPUExecutionProvider"]
        self._memory_pattern = bool(memory_pattern)

        raw = self.model_path.read_bytes()
        try:
            session = self._session(raw)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise NotReidModelError(
                f"{self.model_path}: onnxruntime cannot load it "
                f"({' '.join(str(exc).split())[:200]})") from None
        inputs = session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise NotReidModelError(
                f"{self.model_path}: expected one 4-d image input, got "
                f"{[i.shape for i in inputs]}")
        shape = inputs[0].shape
        if shape[3] == 3:
            self.layout = "NHWC"
            hw = shape[1:3]
        elif shape[1] == 3:
            self.layout = "NCHW"
            hw = shape[2:4]
        else:
            raise NotReidModelError(
                f"{self.model_path}: input shape {shape} has no 3-channel axis (NHWC or NCHW)")
        self.input_hw: tuple[int, int] = (
            (hw[0], hw[1]) if all(isinstance(d, int) and d > 0 for d in hw) else DEFAULT_INPUT_HW)
        self._input_name = inputs[0].name
        self.max_batch = max_batch
        if isinstance(shape[0], int) and shape[0] != 1:
            raise NotReidModelError(
                f"{self.model_path}: fixed batch size {shape[0]} is not supported (1 or free)")
        self.batched = not isinstance(shape[0], int)
        self._session_ = session
        if not self.batched and max_batch > 1:
            self._try_free_batch(raw)
        if not self.batched:
            self.max_batch = 1
        try:
            probe = self._run(np.zeros((1, *self.input_hw, 3), dtype=np.uint8))
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise NotReidModelError(
                f"{self.model_path}: does not run on a {self.layout} float image "
                f"({' '.join(str(exc).split())[:200]})") from None
        if probe.ndim != 2 or probe.shape[1] < 1:
            raise NotReidModelError(f"{self.model_path}: output is not one embedding per image")
        self.dim = int(probe.shape[1])

    def _session(self, model: bytes, *, quiet: bool = False) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.log_severity_level = 4 if quiet else 3  # a trial that fails is not an error
        options.enable_mem_pattern = self._memory_pattern
        return ort.InferenceSession(model, sess_options=options, providers=self._providers)

    def _try_free_batch(self, raw: bytes) -> None:
        """Switch to a batch-free copy of the graph if it computes each image on its own."""
        try:
            edited, _ = make_batch_dynamic(raw)
        except ProtobufError:
            return
        try:
            session = self._session(edited, quiet=True)
        except Exception:  # noqa: BLE001 - onnxruntime refuses the edit: keep batch 1
            return
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (3, *self.input_hw, 3), dtype=np.uint8)
        images[2] = 0  # a constant image: catches statistics shared across the batch
        try:
            together = self._run(images, session)
        except Exception:  # noqa: BLE001 - any runtime failure means: keep batch 1
            return
        alone = np.concatenate([self._run(images[i:i + 1]) for i in range(len(images))])
        tolerance = 1e-4 * max(1.0, float(np.abs(alone).max()))
        if together.shape == alone.shape and np.abs(together - alone).max() <= tolerance:
            self._session_ = session
            self.batched = True

    def _blob(self, crops: np.ndarray) -> np.ndarray:
        blob = crops.astype(np.float32)
        if self._rgb:
            blob = blob[..., ::-1]
        if self._scale != 1.0:
            blob *= self._scale
        if self._mean is not None:
            blob -= self._mean
        if self._std is not None:
            blob /= self._std
        if self.layout == "NCHW":
            blob = blob.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(blob)

    def _run(self, crops: np.ndarray, session: ort.InferenceSession | None = None) -> np.ndarray:
        """Raw model output (K, D) for (K, h, w, 3) uint8 BGR crops, in one call."""
        session = session or self._session_
        out = session.run(None, {self._input_name: self._blob(crops)})[0]
        return np.asarray(out, dtype=np.float32).reshape(len(crops), -1)

