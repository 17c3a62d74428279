"""OSTrack behind the :class:`~autotrack.sot.base.SingleObjectTracker` interface, with the same
in-band state + session + re-initialisation design as :class:`~autotrack.sot.OpenCVTracker`.

``load_sot("ostrack", checkpoint=PATH, preset=NAME)`` builds one. The model is the official
OSTrack (:mod:`autotrack.sot.ostrack`) loaded strictly from an official checkpoint
(``OSTrack_ep0300.pth.tar``), given as ``checkpoint`` or by ``AUTOTRACK_OSTRACK_CHECKPOINT``
(preset from ``preset`` or ``AUTOTRACK_OSTRACK_PRESET``, default
``vitb_256_mae_ce_32x4_ep300``). The weights are not redistributable here, so nothing is
downloaded: without a checkpoint the constructor refuses with a one-line
:class:`~autotrack.errors.ModelNotFoundError`. ``preset="tiny-random"`` is a test option only:
:func:`~autotrack.sot.ostrack.tiny_config` with seeded random weights, no checkpoint.

State. The in-band :class:`~autotrack.sot.base.SotState` (``kind="ostrack"``) carries the last
box and score and a JPEG of the model's template crop (``template_factor`` x the target, the
``template_size`` square the network embeds; at most 256x256), with the target's box inside
it. The worker's :class:`~autotrack.sot.session.SessionStore` keeps the model's template input
(the exact normalised crop tensor, on the model's device) under the state's session id. When
the session is gone (another worker, a restart, an eviction), :meth:`OSTrackSot.update`
rebuilds the template from the JPEG: OSTrack keeps its first template for the whole track and
its search crop depends only on the last box, so the rebuilt tracker continues the same loop
(the only difference is the JPEG's loss).
"""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path

import cv2
import numpy as np
import torch

from autotrack.errors import AutotrackError, ModelNotFoundError, StateError
from autotrack.sot import ostrack as ost
from autotrack.sot.base import MAX_SOT_STATE_BYTES, Box, SotState, check_box, clip_to_frame
from autotrack.sot.session import Session, SessionStore
from autotrack.state import decode_state_jpeg

CHECKPOINT_ENV = "AUTOTRACK_OSTRACK_CHECKPOINT"
PRESET_ENV = "AUTOTRACK_OSTRACK_PRESET"
DEFAULT_PRESET = "vitb_256_mae_ce_32x4_ep300"
TINY_RANDOM = "tiny-random"  # tests only: tiny_config() with seeded random weights
RELEASE_PAGE = "https://github.com/botaoye/OSTrack#evaluation"
_JPEG_QUALITIES = (90, 80, 70, 60, 50)
_MAX_TEMPLATE_SIDE = 256


def missing_checkpoint_message() -> str:
    return (f"no OSTrack checkpoint: set {CHECKPOINT_ENV} to an official OSTrack_ep0300.pth.tar "
            f"(vitb_256_mae_ce_32x4_ep300, from {RELEASE_PAGE}); weights are not downloaded")


def resolve_device(device: str | None = None) -> torch.device:
    """``device``, else ``AUTOTRACK_DEVICE``, else CPU; a CUDA device torch cannot see is an
    error, not a silent fallback."""
    name = (device or os.environ.get("AUTOTRACK_DEVICE", "") or "cpu").strip()
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise AutotrackError(f"unknown torch device {name!r}: cpu or cuda[:N]") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AutotrackError(f"device {name!r} asked for, but torch sees no CUDA device")
    return dev


def build_model(checkpoint: str | Path | None = None, preset: str | None = None,
                seed: int = 0) -> ost.OSTrack:
    preset = (preset or os.environ.get(PRESET_ENV, "") or DEFAULT_PRESET).strip()
    if preset == TINY_RANDOM:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            return ost.build_ostrack(ost.tiny_config())
    if preset not in ost.PRESETS:
        raise AutotrackError(f"unknown OSTrack preset {preset!r}: one of "
                             f"{', '.join(sorted(ost.PRESETS))}")
    path = str(checkpoint or "").strip() or os.environ.get(CHECKPOINT_ENV, "").strip()
    if not path:
        raise ModelNotFoundError(missing_checkpoint_message())
    if not Path(path).is_file():
        raise ModelNotFoundError(f"OSTrack checkpoint {path} ({CHECKPOINT_ENV}) is not a file; "
                                 f"get OSTrack_ep0300.pth.tar from {RELEASE_PAGE}")
    try:
        return ost.load_ostrack(path, preset)
    except Exception as exc:  # pickle, key or shape mismatch: one line, with the preset
        text = " ".join(str(exc).split())[:300]
        raise AutotrackError(f"cannot load OSTrack checkpoint {path} as preset {preset}: "
                             f"{text}") from None


class OSTrackSot:
    """One OSTrack model serving any number of objects through a session store."""

    kind = "ostrack"

    def __init__(self, checkpoint: str | Path | None = None, preset: str | None = None,
                 store: SessionStore | None = None, device: str | None = None,
                 seed: int = 0) -> None:
        self.device = resolve_device(device)
        self.model = build_model(checkpoint, preset, seed).to(self.device).eval()
        self.cfg = self.model.cfg
        self.store = store if store is not None else SessionStore()
        self.reinits = 0  # how often a missing session was rebuilt from in-band state
        self.window = ost.hann2d(self.cfg.feat_sz).to(self.device)
        self.mask = ost.template_mask(self.cfg, device=self.device)
        self._lock = threading.Lock()  # one forward at a time per model

    # -- the SOT interface -------------------------------------------------------------
    def init(self, frame: np.ndarray, box: Box) -> SotState:
        rgb = _rgb(frame)
        box = clip_to_frame(check_box(box), frame.shape)
        x1, y1, x2, y2 = box
        xywh = [x1, y1, x2 - x1, y2 - y1]
        patch, resize = ost.sample_target(rgb, xywh, self.cfg.template_factor,
                                          self.cfg.template_size)
        side = self.cfg.template_size
        w, h = xywh[2] * resize, xywh[3] * resize
        template_box = (side / 2 - w / 2, side / 2 - h / 2, side / 2 + w / 2, side / 2 + h / 2)
        session = self.store.new_id()
        bgr = cv2.cvtColor(patch, cv2.COLOR_RGB2BGR)
        state = None
        for out_side in (side, min(side, 128), min(side, 96), min(side, 64)):
            small = bgr if out_side == side else cv2.resize(bgr, (out_side, out_side),
                                                            interpolation=cv2.INTER_AREA)
            k = out_side / side
            scaled = tuple(v * k for v in template_box)
            for quality in _JPEG_QUALITIES:
                state = SotState(self.kind, box, 1.0, _jpeg(small, quality), scaled, session, 0)
                if len(state.encode_unchecked()) <= MAX_SOT_STATE_BYTES:
                    break
            else:
                continue
            break
        template = ost._to_tensor(patch).to(self.device)
        self.store.put(session, Session(template, 0, box, 0.0))
        return state

    def update(self, frame: np.ndarray, state: SotState) -> tuple[Box, float, SotState]:
        rgb = _rgb(frame)
        if state.kind != self.kind:
            raise StateError(f"state is for {state.kind!r}, this tracker is {self.kind!r}")
        live = self.store.take_matching(state.session, state.step, state.box)
        session_id = state.session
        if live is None:
            template = self.reinitialise(state)
            session_id = self.store.new_id()
        else:
            template = live.tracker
        box, score = self._track(rgb, template, state.box)
        step = state.step + 1
        self.store.put(session_id, Session(template, step, box, 0.0))
        return box, score, state.with_(box=box, score=score, session=session_id, step=step)

    # -- re-initialisation from in-band state ------------------------------------------
    def reinitialise(self, state: SotState) -> torch.Tensor:
        """The model's template input rebuilt from the state's JPEG."""
        self.reinits += 1
        image = decode_state_jpeg(state.template, _MAX_TEMPLATE_SIDE, "SOT state template")
        if image.shape[0] != image.shape[1]:
            raise StateError("SOT state template is not a decodable square JPEG of at most "
                             f"{_MAX_TEMPLATE_SIDE}x{_MAX_TEMPLATE_SIDE}")
        side = self.cfg.template_size
        if image.shape[0] != side:
            image = cv2.resize(image, (side, side), interpolation=cv2.INTER_LINEAR)
        return ost._to_tensor(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)).to(self.device)

    # -- the official test-time step (OSTrackTracker.update, device-aware) ---------------
    @torch.no_grad()
    def _track(self, rgb: np.ndarray, template: torch.Tensor, last: Box) -> tuple[Box, float]:
        cfg = self.cfg
        h_img, w_img = rgb.shape[:2]
        x1, y1, x2, y2 = last
        prev = [x1, y1, x2 - x1, y2 - y1]
        patch, resize = ost.sample_target(rgb, prev, cfg.search_factor, cfg.search_size)
        search = ost._to_tensor(patch).to(self.device)
        with self._lock:
            out = self.model(template, search, self.mask)
        response = self.window * out["score_map"]
        pred, _ = self.model.box_head.cal_bbox(response, out["size_map"], out["offset_map"])
        idx = int(response.flatten(1).argmax(1))
        score = float(out["score_map"].flatten(1)[0, idx])
        cx, cy, w, h = (pred[0] * cfg.search_size / resize).tolist()
        px, py, pw, ph = prev
        half = 0.5 * cfg.search_size / resize
        cx, cy = cx + (px + 0.5 * pw - half), cy + (py + 0.5 * ph - half)
        nx, ny, nw, nh = ost.clip_box([cx - 0.5 * w, cy - 0.5 * h, w, h], h_img, w_img,
                                      cfg.clip_margin)
        box = (float(nx), float(ny), float(nx + nw), float(ny + nh))
        if not all(math.isfinite(v) for v in box) or not (box[2] > box[0] and box[3] > box[1]):
            return last, 0.0  # a degenerate prediction: hold the last box, report lost
        return box, score if math.isfinite(score) else 0.0


def _jpeg(bgr: np.ndarray, quality: int) -> bytes:
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("cannot encode the OSTrack template")
    return data.tobytes()


def _rgb(frame: np.ndarray) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 \
            or frame.shape[2] != 3 or frame.shape[0] < 2 or frame.shape[1] < 2:
        raise ValueError("frame must be an HxWx3 uint8 BGR image")
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
