"""Our single-object trackers as cvat-sdk auto-annotation *tracking* functions.

`cvat-cli function create-native NAME --function-file functions/vittrack.py` registers the
function with CVAT; `cvat-cli function run-agent ID --function-file functions/vittrack.py`
then serves CVAT's interactive tracking requests (``functions/nanotrack.py`` likewise). Both
thin files hand their ``-p name=type:value`` parameters to :func:`create_sot_function`.

What comes back implements cvat-sdk's ``TrackingFunction`` protocol:

* ``spec``: ``TrackingFunctionSpec(supported_shape_types={"rectangle"})``;
* ``preprocess_image``: the PIL image (any mode) as the HxWx3 uint8 BGR array our trackers
  take; the agent calls it once per frame and shares the result between shapes;
* ``init_tracking_state``: initialises the SOT (:func:`autotrack.sot.load_sot`) on the
  rectangle and returns a :class:`TrackingState`;
* ``track``: one :meth:`~autotrack.sot.OpenCVTracker.update`; returns the new rectangle, or
  None when the tracker's score is below ``min_score`` (the object is taken as lost on this
  frame). The state is updated either way, so the tracker may find the object again.

The agent keeps each state in its worker process and sends only a random id through CVAT, so
the state here is a plain mutable object that never leaves the process. The live cv2 tracker
sits in the function's :class:`~autotrack.sot.SessionStore`; if it has been evicted (more
than ``max_sessions`` objects, or idle over ``session_ttl_s``), the tracker is rebuilt from the
in-band :class:`~autotrack.sot.SotState` template, as in the Nuclio trackers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cvat_sdk.auto_annotation as cvataa
import numpy as np
import PIL.Image

from autotrack.cvat.sdk.detection import pil_to_bgr
from autotrack.errors import AutotrackError, InputError
from autotrack.sot import (
    SOT_KINDS,
    OpenCVTracker,
    SessionStore,
    SotState,
    check_box,
    load_sot,
)
from autotrack.sot.session import DEFAULT_MAX_SESSIONS, DEFAULT_TTL_S

# Below this score the shape is reported lost. OpenCV's own TrackerVit_Params
# ``tracking_score_threshold`` default; NanoTrack's scores sit around 0.9 while it holds on.
DEFAULT_MIN_SCORE = 0.2
SHAPE_TYPE = "rectangle"


@dataclass
class TrackingState:
    """One tracked rectangle, kept by the cvat-cli agent between ``track`` calls."""

    sot: SotState
    score: float = 1.0  # the last update's score (1.0 right after init)
    lost: bool = False  # whether the last update fell below min_score

    @property
    def box(self) -> tuple[float, float, float, float]:
        return self.sot.box


class SotTrackingFunction:
    """cvat-sdk ``TrackingFunction`` around one :class:`~autotrack.sot.OpenCVTracker`.

    One instance (one model) serves any number of shapes; each shape's live tracker lives in
    ``tracker.store`` under the session id in its state.
    """

    def __init__(self, tracker: OpenCVTracker, *, min_score: float = DEFAULT_MIN_SCORE) -> None:
        min_score = float(min_score)
        if not 0.0 <= min_score <= 1.0:
            raise AutotrackError(f"min_score must be between 0 and 1, got {min_score}")
        self.tracker = tracker
        self.min_score = min_score
        self._spec = cvataa.TrackingFunctionSpec(supported_shape_types={SHAPE_TYPE})

    @property
    def kind(self) -> str:
        return self.tracker.kind

    @property
    def spec(self) -> cvataa.TrackingFunctionSpec:
        return self._spec

    def preprocess_image(
        self, context: cvataa.TrackingFunctionContext, image: PIL.Image.Image
    ) -> np.ndarray:
        return pil_to_bgr(image)

    def init_tracking_state(
        self,
        context: cvataa.TrackingFunctionShapeContext,
        pp_image: np.ndarray,
        shape: cvataa.TrackableShape,
    ) -> TrackingState:
        box = rectangle_box(shape)
        try:
            sot = self.tracker.init(pp_image, box)
        except ValueError as exc:  # e.g. a rectangle wholly outside the frame
            raise InputError(str(exc)) from None
        return TrackingState(sot)

    def track(
        self,
        context: cvataa.TrackingFunctionShapeContext,
        pp_image: np.ndarray,
        state: TrackingState,
    ) -> cvataa.TrackableShape | None:
        box, score, sot = self.tracker.update(pp_image, state.sot)
        state.sot = sot
        state.score = score if math.isfinite(score) else 0.0
        state.lost = state.score < self.min_score
        if state.lost:
            return None
        return cvataa.TrackableShape(type=SHAPE_TYPE, points=[float(v) for v in box])


def rectangle_box(shape: cvataa.TrackableShape) -> tuple[float, float, float, float]:
    """x1 y1 x2 y2 of a CVAT rectangle (corners in either order), or InputError."""
    if shape.type != SHAPE_TYPE:
        raise InputError(f"only rectangles can be tracked, got a {shape.type!r} shape")
    points = list(shape.points)
    if len(points) != 4:
        raise InputError(f"a rectangle has 4 points (x1 y1 x2 y2), got {len(points)}")
    try:
        x1, y1, x2, y2 = (float(v) for v in points)
        return check_box((min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)), "rectangle")
    except (TypeError, ValueError) as exc:
        raise InputError(str(exc)) from None


def create_sot_function(
    kind: str,
    *,
    min_score: float = DEFAULT_MIN_SCORE,
    max_sessions: int = DEFAULT_MAX_SESSIONS,
    session_ttl_s: float = DEFAULT_TTL_S,
) -> SotTrackingFunction:
    """A tracking function for ``kind`` (``vittrack`` or ``nanotrack``), weights from the
    model registry (``AUTOTRACK_MODELS``); unknown parameters are TypeErrors, as for any
    Python call."""
    if kind not in SOT_KINDS:
        raise InputError(f"unknown single-object tracker {kind!r}: one of {', '.join(SOT_KINDS)}")
    try:
        store = SessionStore(ttl_s=float(session_ttl_s), max_sessions=int(max_sessions))
    except ValueError as exc:
        raise AutotrackError(str(exc)) from None
    return SotTrackingFunction(load_sot(kind, store), min_score=min_score)


def create_vittrack(
    *,
    min_score: float = DEFAULT_MIN_SCORE,
    max_sessions: int = DEFAULT_MAX_SESSIONS,
    session_ttl_s: float = DEFAULT_TTL_S,
) -> SotTrackingFunction:
    """``create`` of ``functions/vittrack.py`` (its parameters are the ``-p`` names)."""
    return create_sot_function("vittrack", min_score=min_score, max_sessions=max_sessions,
                               session_ttl_s=session_ttl_s)


def create_nanotrack(
    *,
    min_score: float = DEFAULT_MIN_SCORE,
    max_sessions: int = DEFAULT_MAX_SESSIONS,
    session_ttl_s: float = DEFAULT_TTL_S,
) -> SotTrackingFunction:
    """``create`` of ``functions/nanotrack.py`` (its parameters are the ``-p`` names)."""
    return create_sot_function("nanotrack", min_score=min_score, max_sessions=max_sessions,
                               session_ttl_s=session_ttl_s)
