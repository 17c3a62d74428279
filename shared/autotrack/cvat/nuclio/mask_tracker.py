"""Nuclio handler core for a CVAT ``type: tracker`` function that follows objects as masks
(SAM2, XMem), and the session logic it shares with the cvat-sdk door.

What CVAT sends (``LambdaFunction.invoke`` in cvat/apps/lambda_manager/views.py) is what the
SOT trackers get (:mod:`autotrack.cvat.nuclio.tracker`): ``{"image", "shapes", "states"}``,
shapes to start, states to continue (then ``shapes`` is ``[None] * len(states)``), one entry
per object, states handed back as the JSON value this function returned (CVAT signs them,
8 hours).

**Rectangles only, both ways.** CVAT's UI tracks rectangles only (``onTracking`` makes
rectangle tracks; ``checkTrackedStates`` reads every answer through ``trackedRectangleMapper``,
the min/max of its points). function.yaml declares no ``supported_shape_types``, so the lambda
manager refuses any other shape type (400) and sends each rectangle as its bare
``[x1, y1, x2, y2]``; declaring the annotation would make it stop wrapping our answers and the
UI fail on every one. Callers of the function itself may still start an object from a CVAT
shape object ``{"type": "rectangle" | "polygon" | "mask", "points": [...]}`` (a mask's points are
CVAT's RLE: run lengths over its box, then the box's inclusive corners).

The answer is ``{"shapes": [[x1, y1, x2, y2], ...], "states": [...]}``, one of each per object:
the box of the object's mask (pixel edges: x2 is the last column + 1). A lost object keeps its
last box (a ``null`` shape would fail the whole batch in the UI), else the box it was started
from. Masks and polygons over a video are the offline door's (``autotrack task annotate
--segmenter``, ``autotrack annotate --segmenter``) and the cvat-sdk tracking functions', not
this one's; ``AUTOTRACK_VOS_OUTPUT`` (mask, polygon) and ``conv_mask_to_poly`` are gone: CVAT
relabelled every answer as a rectangle.

All objects started in one request share one segmenter (one image encoding per frame for all
of them) kept in this worker's :class:`~autotrack.sot.SessionStore`; each state
(:class:`~autotrack.vos.mask_state.MaskTrackState`) carries the start frame and mask, so
another worker, or this one after the session expired, starts the object again from it.

Problems are answered as by every function here: 400 with ``{"error", "status", "field"}``,
413 for what is too large, 500 for a model failure, 503 before :func:`init_context`.
Settings (``spec.env``): ``AUTOTRACK_VOS_SESSION_TTL`` (seconds, default 900),
``AUTOTRACK_VOS_MAX_SESSIONS`` (live segmenters per worker, default 4: each holds a model's
memory of past frames), ``AUTOTRACK_VOS_MAX_SHAPES`` (objects per request, default 32),
``AUTOTRACK_STATE_KEY`` and the image limits of every function.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from autotrack.cvat.nuclio.base import LambdaFunction, handle_loaded, install_function
from autotrack.cvat.nuclio.request import (
    MASK_MAX_IMAGE_PIXELS,
    RequestError,
    RequestLimits,
    decode_base64_image,
    parse_json_object,
)
from autotrack.cvat.nuclio.tracker import (
    request_state,
    shape_rotation,
    shapes_and_states,
)
from autotrack.errors import StateError
from autotrack.numbers import describe, quote
from autotrack.settings import env_number
from autotrack.sot.session import DEFAULT_TTL_S, SessionStore
from autotrack.vos.factory import SegmenterFactory, segmenter_factory
from autotrack.vos.mask_state import (
    MAX_MASK_STATE_BYTES,
    MaskTrackState,
    shape_points,
    shape_prompt,
)
from autotrack.vos.sessions import MaskTracker

DEFAULT_MAX_SHAPES = 16  # a restart from states costs two model steps per start frame
DEFAULT_MAX_SESSIONS = 4
TRACKER_FIELDS = ("image", "shapes", "states")
# AUTOTRACK_VOS_OUTPUT once chose masks or polygons; CVAT's tracker takes rectangles only
_OLD_OUTPUT_VALUES = ("", "shape", "rectangle")


@dataclass(frozen=True)
class MaskTrackerSettings:
    session_ttl_s: float = DEFAULT_TTL_S
    max_sessions: int = DEFAULT_MAX_SESSIONS
    max_shapes: int = DEFAULT_MAX_SHAPES
    limits: RequestLimits = field(
        default_factory=lambda: RequestLimits(max_image_pixels=MASK_MAX_IMAGE_PIXELS))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> MaskTrackerSettings:
        environ = os.environ if environ is None else environ
        output = environ.get("AUTOTRACK_VOS_OUTPUT", "").strip()
        if output not in _OLD_OUTPUT_VALUES:
            raise ValueError(f"AUTOTRACK_VOS_OUTPUT={output} is no longer supported: CVAT's "
                             "tracker UI takes rectangles only; for masks or polygons over a "
                             "video use `autotrack task annotate --segmenter` or the cvat-sdk "
                             "tracking functions")
        return cls(
            session_ttl_s=env_number(environ, "AUTOTRACK_VOS_SESSION_TTL", DEFAULT_TTL_S, 1e-3),
            max_sessions=int(env_number(environ, "AUTOTRACK_VOS_MAX_SESSIONS",
                                         DEFAULT_MAX_SESSIONS, 0, integer=True)),
            max_shapes=int(env_number(environ, "AUTOTRACK_VOS_MAX_SHAPES", DEFAULT_MAX_SHAPES,
                                       1, integer=True)),
            limits=RequestLimits.from_env(environ, max_image_pixels=MASK_MAX_IMAGE_PIXELS),
        )


@dataclass(frozen=True)
class MaskTrackerRequest:
    image: np.ndarray
    items: tuple[tuple[str, object], ...]  # ("init", ShapePrompt) or ("continue", state)
    ignored_fields: tuple[str, ...] = ()


class MaskTrackerFunction(LambdaFunction[MaskTrackerRequest]):
    """One mask tracker answering CVAT tracker requests; kept in ``context.user_data``."""

    failure_subject = "this frame"

    def __init__(self, tracker: MaskTracker, settings: MaskTrackerSettings | None = None) -> None:
        self.tracker = tracker
        self.settings = settings or MaskTrackerSettings()

    def parse(self, body: object) -> MaskTrackerRequest:
        limits = self.settings.limits
        payload = parse_json_object(body, limits)
        shapes, states = shapes_and_states(payload, self.settings.max_shapes,
                                           "AUTOTRACK_VOS_MAX_SHAPES")
        decoded: dict[int, MaskTrackState] = {}
        seen: dict[tuple[str, int], int] = {}
        for i, shape in enumerate(shapes):
            state = states[i] if i < len(states) else None
            if state is not None:
                decoded[i] = self._state(state, i)
                key = (decoded[i].session, decoded[i].object_id)
                if key in seen:
                    raise RequestError(f"'states[{i}]' repeats 'states[{seen[key]}]'",
                                       field=f"states[{i}]")
                seen[key] = i
            elif shape is None:
                raise RequestError(f"'shapes[{i}]' and 'states[{i}]' are both null: nothing to "
                                   "track", field=f"shapes[{i}]")
            else:
                _shape_fields(shape, i)  # cheap checks before the image is decoded
        image, _ = decode_base64_image(payload.get("image"), limits)
        height, width = image.shape[:2]
        items: list[tuple[str, object]] = []
        for i, shape in enumerate(shapes):
            if i in decoded:
                state = decoded[i]
                if state.frame_size != (height, width):
                    raise RequestError(
                        f"'states[{i}]' was started on a {state.frame_size[1]}x"
                        f"{state.frame_size[0]} frame, this one is {width}x{height}",
                        field=f"states[{i}]")
                items.append(("continue", state))
            else:
                kind, points = _shape_fields(shape, i)
                try:
                    items.append(("init", shape_prompt(kind, points, height, width)))
                except ValueError as exc:
                    raise RequestError(f"'shapes[{i}]': {exc}", field=f"shapes[{i}]") from None
        return MaskTrackerRequest(image, tuple(items), tuple(
            sorted(str(k) for k in payload if k not in TRACKER_FIELDS)))

    def run(self, request: MaskTrackerRequest) -> dict[str, list]:
        starts = [i for i, (what, _) in enumerate(request.items) if what == "init"]
        follows = [i for i, (what, _) in enumerate(request.items) if what == "continue"]
        results: list = [None] * len(request.items)
        if starts:
            for i, result in zip(starts, self.tracker.start(
                    request.image, [request.items[i][1] for i in starts])):
                results[i] = result
        if follows:
            try:
                followed = self.tracker.follow(request.image,
                                               [request.items[i][1] for i in follows])
            except StateError as exc:  # e.g. a stored frame that does not decode
                raise RequestError(f"a state is refused: {exc}", field="states") from None
            for i, result in zip(follows, followed):
                results[i] = result
        shapes, states, lost = [], [], 0
        for mask, state in results:
            shapes.append(tracked_box(mask, state))
            lost += not mask.any()
            states.append(state.encode())
        return _Answer({"shapes": shapes, "states": states}, lost=lost)

    def describe(self, request: MaskTrackerRequest, result: dict[str, list],
                 milliseconds: float) -> str:
        lost = getattr(result, "lost", 0)
        return f"tracked {len(result['shapes'])} objects ({lost} lost) in {milliseconds:.0f} ms"

    def _state(self, value: object, index: int) -> MaskTrackState:
        def decode(text: str) -> MaskTrackState:
            state = MaskTrackState.decode(text, self.tracker.kind)
            state.stored_prompt_frame()  # refused now, not after other objects restarted
            return state

        return request_state(value, index, MAX_MASK_STATE_BYTES, decode)


class _Answer(dict):
    """The JSON answer, and how many objects were lost on this frame (for the log only)."""

    def __init__(self, fields: dict, *, lost: int) -> None:
        super().__init__(fields)
        self.lost = lost


def tracked_box(mask: np.ndarray, state: MaskTrackState) -> list[float]:
    """What CVAT's tracker UI gets for one object: ``[x1, y1, x2, y2]``, the box of its mask,
    else (lost) its last box, else the box it was started from; never null."""
    box = shape_points("rectangle", mask, state.last_box or state.prompt_box)
    if box is None:  # pragma: no cover (a started state always has a prompt box)
        raise RuntimeError("a tracked object has no box")
    return box


def _shape_fields(shape: object, index: int) -> tuple[str, object]:
    """(type, points) of a bare rectangle or a CVAT shape object."""
    where = f"shapes[{index}]"
    if isinstance(shape, list):
        return "rectangle", shape
    if not isinstance(shape, dict):
        raise RequestError(f"'{where}' must be a rectangle's [x1, y1, x2, y2] or a shape "
                           f"object, got {describe(shape)}", field=where)
    kind = shape.get("type", "rectangle")
    if not isinstance(kind, str) or kind not in ("rectangle", "polygon", "mask"):
        raise RequestError(f"'{where}' has type {quote(kind)}; this tracker follows "
                           "rectangles, polygons and masks", field=where)
    if kind == "rectangle" and shape_rotation(shape, where) % 360 != 0:
        raise RequestError(f"'{where}' is rotated; this tracker follows upright boxes only",
                           field=where)
    if not isinstance(shape.get("points"), list):
        raise RequestError(f"'{where}' has no 'points' list", field=where)
    return kind, shape["points"]


# --- Nuclio entry points -----------------------------------------------------------------


def init_context(context: object, kind: str, factory: SegmenterFactory | None = None,
                 settings: MaskTrackerSettings | None = None) -> MaskTrackerFunction:
    """Load the model once per worker and keep the function in ``context.user_data``."""
    def build() -> MaskTrackerFunction:
        ready = settings or MaskTrackerSettings.from_env()
        store = SessionStore(ready.session_ttl_s, ready.max_sessions)
        return MaskTrackerFunction(MaskTracker(kind, factory or segmenter_factory(kind), store),
                                   ready)

    return install_function(context, f"the {kind} mask tracker", build, signs_states=True)


def handle(context: object, event: object) -> object:
    """Answer one CVAT tracker request with the function :func:`init_context` loaded."""
    return handle_loaded(context, event, MaskTrackerFunction)


__all__ = ["MaskTrackerFunction", "MaskTrackerSettings", "handle", "init_context",
           "tracked_box"]
