"""VitTrack and NanoTrack through OpenCV (``cv2.TrackerVit``, ``cv2.TrackerNano``) with the
registry's ONNX weights, behind the :class:`~autotrack.sot.base.SingleObjectTracker` interface.

The live cv2 tracker stays in a :class:`~autotrack.sot.session.SessionStore`; the in-band
:class:`~autotrack.sot.base.SotState` carries a JPEG of the first frame's target with context
(a square crop like the one both models take their template from, at most 128x128). When the
session is gone, :meth:`OpenCVTracker.update` re-initialises: it warps that template onto a
copy of the current frame so that the first target lands on the last box, initialises a fresh
tracker there and tracks on the real frame. Both models keep their first template for the
whole track, so the re-initialised tracker sees what the lost one saw.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from autotrack.errors import StateError
from autotrack.models import resolve_model
from autotrack.sot.base import (
    MAX_SOT_STATE_BYTES,
    MIN_FRAME_SIDE,
    Box,
    SotState,
    check_box,
    clip_to_frame,
)
from autotrack.sot.session import Session, SessionStore
from autotrack.state import decode_state_jpeg

TEMPLATE_SIDE = 128
_TEMPLATE_TRIES = ((128, 90), (128, 75), (112, 70), (96, 65), (80, 60), (64, 50))


@dataclass(frozen=True)
class ModelFiles:
    kind: str
    files: tuple[Path, ...]


def model_files(kind: str) -> ModelFiles:
    if kind == "vittrack":
        return ModelFiles(kind, (resolve_model("vittrack"),))
    if kind == "nanotrack":
        return ModelFiles(kind, (resolve_model("nanotrack-backbone"),
                                 resolve_model("nanotrack-head")))
    raise ValueError(f"unknown OpenCV tracker {kind!r}: vittrack or nanotrack")


class OpenCVTracker:
    """One OpenCV SOT model serving any number of objects through a session store."""

    KINDS = ("vittrack", "nanotrack")

    def __init__(self, kind: str = "vittrack", store: SessionStore | None = None) -> None:
        self.models = model_files(kind)
        self.kind = kind
        self.store = store if store is not None else SessionStore()
        self.reinits = 0  # how often a missing session was rebuilt from in-band state
        self._lock = threading.Lock()
        self._create()  # fail at load time, not on the first request

    # -- the SOT interface -------------------------------------------------------------
    def init(self, frame: np.ndarray, box: Box) -> SotState:
        frame = _check_frame(frame)
        box = clip_to_frame(check_box(box), frame.shape)
        tracker = self._create()
        tracker.init(frame, _rect(box))
        template, template_box = None, None
        session = self.store.new_id()
        for side, quality in _TEMPLATE_TRIES:
            template, template_box = make_template(frame, box, side, quality)
            state = SotState(self.kind, box, 1.0, template, template_box, session, 0)
            if len(state.encode_unchecked()) <= MAX_SOT_STATE_BYTES:
                break
        self.store.put(session, Session(tracker, 0, box, 0.0))
        return state

    def update(self, frame: np.ndarray, state: SotState) -> tuple[Box, float, SotState]:
        frame = _check_frame(frame)
        if state.kind != self.kind:
            raise StateError(f"state is for {state.kind!r}, this tracker is {self.kind!r}")
        live = self.store.take_matching(state.session, state.step, state.box)
        session_id = state.session
        if live is None:
            tracker = self.reinitialise(frame, state)
            session_id = self.store.new_id()
        else:
            tracker = live.tracker
        ok, rect = tracker.update(frame)
        score = float(tracker.getTrackingScore())
        x, y, w, h = (float(v) for v in rect)
        box = state.box
        if w > 0 and h > 0:
            clipped = clip_to_frame((x, y, x + w, y + h), frame.shape, allow_empty=True)
            box = clipped if clipped is not None else state.box
        score = score if math.isfinite(score) else 0.0
        step = state.step + 1
        self.store.put(session_id, Session(tracker, step, box, 0.0))
        return box, score, state.with_(box=box, score=score, session=session_id, step=step)

    # -- re-initialisation from in-band state ------------------------------------------
    def reinitialise(self, frame: np.ndarray, state: SotState):
        """A fresh tracker whose template is the state's first target, placed at its last box."""
        self.reinits += 1
        template = decode_state_jpeg(state.template, 256, "SOT state template")
        tx1, ty1, tx2, ty2 = state.template_box
        box = clip_to_frame(state.box, frame.shape, allow_empty=True)
        if box is None:
            raise StateError("SOT state box lies outside this frame")
        x1, y1, x2, y2 = box
        sx, sy = (x2 - x1) / (tx2 - tx1), (y2 - y1) / (ty2 - ty1)
        warp = np.array([[sx, 0, x1 - tx1 * sx], [0, sy, y1 - ty1 * sy]], dtype=np.float64)
        canvas = frame.copy()
        cv2.warpAffine(template, warp, (frame.shape[1], frame.shape[0]), dst=canvas,
                       flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_TRANSPARENT)
        tracker = self._create()
        tracker.init(canvas, _rect(box))
        return tracker

    def _create(self):
        with self._lock:
            if self.kind == "vittrack":
                params = cv2.TrackerVit_Params()
                params.net = str(self.models.files[0])
                return cv2.TrackerVit.create(params)
            params = cv2.TrackerNano_Params()
            params.backbone = str(self.models.files[0])
            params.neckhead = str(self.models.files[1])
            return cv2.TrackerNano.create(params)


def make_template(frame: np.ndarray, box: Box, side_px: int = TEMPLATE_SIDE,
                  quality: int = 90) -> tuple[bytes, Box]:
    """JPEG of a square crop around the box (the context both models use), at most side_px
    wide, and the box's position inside it."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    pad = (w + h) / 2
    side = 1.05 * max(2 * math.sqrt(w * h), math.sqrt((w + pad) * (h + pad)))
    out = int(min(side_px, max(16, math.ceil(side))))
    scale = out / side
    ox, oy = (x1 + x2) / 2 - side / 2, (y1 + y2) / 2 - side / 2
    warp = np.array([[scale, 0, -ox * scale], [0, scale, -oy * scale]], dtype=np.float64)
    crop = cv2.warpAffine(frame, warp, (out, out), flags=cv2.INTER_AREA,
                          borderMode=cv2.BORDER_REPLICATE)
    ok, data = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("cannot encode the SOT template")
    template_box = ((x1 - ox) * scale, (y1 - oy) * scale, (x2 - ox) * scale, (y2 - oy) * scale)
    return data.tobytes(), template_box


def _check_frame(frame: np.ndarray) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 \
            or frame.shape[2] != 3 or min(frame.shape[:2]) < MIN_FRAME_SIDE:
        raise ValueError(f"frame must be an HxWx3 uint8 BGR image of at least "
                         f"{MIN_FRAME_SIDE}x{MIN_FRAME_SIDE} pixels")
    return frame


def _rect(box: Box) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    left, top = int(round(x1)), int(round(y1))
    return left, top, max(1, int(round(x2)) - left), max(1, int(round(y2)) - top)
