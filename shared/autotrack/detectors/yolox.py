"""YOLOX on onnxruntime: letterbox in, raw grid output decoded here, numpy NMS out.

The export keeps decoding out of the graph (one [1, anchors, 5 + classes] tensor of grid offsets,
log sizes and sigmoid scores), so the decode lives in numpy and the model runs on plain
onnxruntime with no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from autotrack.coco import COCO_CLASSES
from autotrack.detections import Detections
from autotrack.detectors.base import check_frame
from autotrack.detectors.nms import nms
from autotrack.errors import AutotrackError
from autotrack.geometry import clip_boxes
from autotrack.models import resolve_model

STRIDES = (8, 16, 32)
PAD_VALUE = 114
_DEFAULT_SIZE = 416  # used only when the export has a dynamic input size


class NotYoloxModelError(AutotrackError):
    """The ONNX file loads but its output is not YOLOX's raw [1, anchors, 5 + classes]."""


class YoloxOnnxDetector:
    """Detector on a raw YOLOX ONNX export; min_score is low because ByteTrack uses weak boxes.

    ``threads`` is onnxruntime's intra-op thread count (None: its default, one per core); the
    pipeline runs several frames at once on one-thread sessions instead (see
    :mod:`autotrack.overlap`). ``batch`` > 1 runs that many frames per call
    (:meth:`detect_batch`) on a copy of the graph with a free batch axis. Calls may come from
    several threads at once: onnxruntime's ``run`` is thread-safe and releases the GIL.
    """

    thread_safe = True  # detect() may run in several threads at once

    def __init__(
        self,
        model_path: str | Path = "yolox-nano",
        min_score: float = 0.1,
        nms_iou: float = 0.45,
        providers: Sequence[str | tuple[str, dict]] | None = None,
        threads: int | None = None,
        batch: int = 1,
    ) -> None:
        self.model_path = resolve_model(model_path)
        self.min_score = float(min_score)
        self.nms_iou = float(nms_iou)
        if batch < 1 or (threads is not None and threads < 0):
            raise AutotrackError(f"batch must be >= 1 and threads >= 0, got {batch}, {threads}")
        self.batch = int(batch)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # some exports warn once per initializer
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1  # the graph is a chain: nothing to run beside it
        model: str | bytes = str(self.model_path)
        if self.batch > 1:
            from autotrack.detectors.batching import with_batch_axis  # needs the onnx package

            model = with_batch_axis(self.model_path)
        self._session = ort.InferenceSession(
            model,
            sess_options=options,
            providers=list(providers) if providers else ["CPUExecutionProvider"],
        )
        self.providers: tuple[str, ...] = tuple(self._session.get_providers())
        inp = self._session.get_inputs()[0]
        self._input_name = inp.name
        self.input_hw = _input_hw(inp.shape)
        self._grid, self._strides = _make_grid(self.input_hw)
        num_classes = _num_classes(self._session, len(self._grid))
        if num_classes is None:
            outputs = [o.shape for o in self._session.get_outputs()]
            raise NotYoloxModelError(
                f"{self.model_path} is not a raw YOLOX export: expected one output of shape "
                f"[1, {len(self._grid)}, 5 + classes] for input {list(self.input_hw)}, "
                f"got {outputs}"
            )
        self.class_names: tuple[str, ...] = (
            COCO_CLASSES if num_classes == len(COCO_CLASSES)
            else tuple(f"class_{i}" for i in range(num_classes))
        )  # fmt: skip

    def detect(self, frame_bgr: np.ndarray) -> Detections:
        frame = check_frame(frame_bgr)
        blob, ratio = letterbox(frame, self.input_hw)
        raw = self._session.run(None, {self._input_name: blob})[0][0]
        return self._decode(raw, ratio, frame.shape[1], frame.shape[0])

    def detect_batch(self, frames_bgr: Sequence[np.ndarray]) -> list[Detections]:
        """:meth:`detect` of each frame, ``batch`` frames per onnxruntime call."""
        if self.batch == 1:
            return [self.detect(frame) for frame in frames_bgr]
        out: list[Detections] = []
        for start in range(0, len(frames_bgr), self.batch):
            frames = [check_frame(f) for f in frames_bgr[start:start + self.batch]]
            blobs, ratios = zip(*(letterbox(f, self.input_hw) for f in frames))
            raw = self._session.run(None, {self._input_name: np.concatenate(blobs)})[0]
            out += [self._decode(r, ratio, f.shape[1], f.shape[0])
                    for r, ratio, f in zip(raw, ratios, frames)]
        return out

    def _decode(self, raw: np.ndarray, ratio: float, width: int, height: int) -> Detections:
        cls = raw[:, 5:]
        class_ids = cls.argmax(axis=1)
        scores = raw[:, 4] * cls[np.arange(len(cls)), class_ids]
        keep = scores >= self.min_score  # decode only the candidates: exp on 3549 rows is waste
        if not keep.any():
            return Detections.empty()
        reg = raw[keep, :4].astype(np.float64)
        stride = self._strides[keep]
        centre = (reg[:, :2] + self._grid[keep]) * stride
        half = np.exp(reg[:, 2:4]) * stride / 2
        boxes = np.concatenate([centre - half, centre + half], axis=1)
        scores, class_ids = scores[keep].astype(np.float64), class_ids[keep]
        order = nms(boxes, scores, self.nms_iou, class_ids)
        boxes = clip_boxes(boxes[order] / ratio, width, height)
        visible = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return Detections(boxes[visible], scores[order][visible], class_ids[order][visible])


def letterbox(frame_bgr: np.ndarray, input_hw: tuple[int, int]) -> tuple[np.ndarray, float]:
    """YOLOX's input: resized to fit, top-left aligned, padded with 114, NCHW float32 0..255."""
    h, w = input_hw
    ratio = min(h / frame_bgr.shape[0], w / frame_bgr.shape[1])
    new_w = max(1, round(frame_bgr.shape[1] * ratio))
    new_h = max(1, round(frame_bgr.shape[0] * ratio))
    padded = np.full((h, w, 3), PAD_VALUE, dtype=np.uint8)
    padded[:new_h, :new_w] = cv2.resize(frame_bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    blob = np.ascontiguousarray(padded.transpose(2, 0, 1)[None], dtype=np.float32)
    return blob, ratio


def _input_hw(shape: Sequence[object]) -> tuple[int, int]:
    h, w = (shape[2], shape[3]) if len(shape) == 4 else (None, None)
    if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
        return h, w
    return _DEFAULT_SIZE, _DEFAULT_SIZE


def _make_grid(input_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Cell (x, y) and stride of every anchor, in the export's order: stride, then row, then col."""
    grids, strides = [], []
    for stride in STRIDES:
        rows, cols = input_hw[0] // stride, input_hw[1] // stride
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        grids.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        strides.append(np.full((rows * cols, 1), stride))
    return np.concatenate(grids).astype(np.float64), np.concatenate(strides).astype(np.float64)


def _num_classes(session: ort.InferenceSession, anchors: int) -> int | None:
    """Classes in a raw YOLOX output, or None when the output has another layout."""
    outputs = session.get_outputs()
    if len(outputs) != 1 or len(outputs[0].shape) != 3:
        return None
    _, rows, channels = outputs[0].shape
    if isinstance(rows, int) and rows != anchors:
        return None
    return channels - 5 if isinstance(channels, int) and channels > 5 else None
