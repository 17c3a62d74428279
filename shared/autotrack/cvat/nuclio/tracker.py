"""Nuclio handler core for a CVAT ``type: tracker`` function (single-object trackers).

What CVAT sends (``LambdaFunction.invoke`` in cvat/apps/lambda_manager/views.py): ``{"image":
<base64 frame>, "shapes": [...], "states": [...]}``.

- Starting: ``shapes`` holds one entry per object and ``states`` is ``[]``. A function whose
  function.yaml declares no ``supported_shape_types`` (ours) gets each shape as its bare
  ``points`` list ``[x1, y1, x2, y2]``; with the annotation it would get CVAT's shape object
  (``{"type": "rectangle", "points": [...], ...}``), which is accepted too.
- Continuing: ``states`` holds the states this function returned last time and ``shapes`` is
  ``[None] * len(states)``. CVAT signs every state it hands out (``TimestampSigner``, 8 hours)
  and gives the function back the JSON value it returned.

The answer is ``{"shapes": [[x1, y1, x2, y2], ...], "states": [...]}``, one of each per input
shape; CVAT wraps each points list as a rectangle and signs each state.

Each state here is an :class:`autotrack.sot.SotState` text (digest- or HMAC-checked, at most
16 KiB). The live cv2 tracker stays in this worker's session store; another worker, or this one
after a restart, re-initialises from the state's template and last box.

Problems are answered like the detector functions do (:mod:`autotrack.cvat.nuclio.request`):
400 with ``{"error", "status", "field"}`` for malformed input or edited, foreign or unknown
states, 413 for what is too large, 500 for a model failure, 503 before :func:`init_context`.
Every number (box, rotation, state fields) is read by :mod:`autotrack.numbers`; a frame under
2x2 pixels (which the models cannot take) is refused before the model runs.

Settings (function.yaml ``spec.env``): ``AUTOTRACK_SOT_SESSION_TTL`` (seconds a live tracker is
kept unused, default 900), ``AUTOTRACK_SOT_MAX_SESSIONS`` (live trackers per worker, default
128), ``AUTOTRACK_SOT_MAX_SHAPES`` (objects per request, default 64), ``AUTOTRACK_STATE_KEY``
(HMAC key for states; set it), and the image limits of the detector functions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from autotrack.cvat.nuclio.base import (
    LambdaFunction,
    handle_loaded,
    install_function,
    one_line,
)
from autotrack.cvat.nuclio.request import (
    RequestError,
    RequestLimits,
    decode_base64_image,
    parse_json_object,
)
from autotrack.errors import StateError
from autotrack.numbers import NumberError, describe, parse_number, quote
from autotrack.settings import env_number
from autotrack.sot import (
    MAX_SOT_STATE_BYTES,
    SessionStore,
    SotState,
    check_box,
    load_sot,
)
from autotrack.sot.base import MAX_FRAME_ASPECT, MIN_FRAME_SIDE, SingleObjectTracker
from autotrack.sot.session import DEFAULT_MAX_SESSIONS, DEFAULT_TTL_S

StateT = TypeVar("StateT")
DEFAULT_MAX_SHAPES = 64
TRACKER_FIELDS = ("image", "shapes", "states")


@dataclass(frozen=True)
class TrackerSettings:
    session_ttl_s: float = DEFAULT_TTL_S
    max_sessions: int = DEFAULT_MAX_SESSIONS
    max_shapes: int = DEFAULT_MAX_SHAPES
    limits: RequestLimits = field(default_factory=RequestLimits)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TrackerSettings:
        environ = os.environ if environ is None else environ
        return cls(
            session_ttl_s=env_number(environ, "AUTOTRACK_SOT_SESSION_TTL", DEFAULT_TTL_S, 1e-3),
            max_sessions=int(env_number(environ, "AUTOTRACK_SOT_MAX_SESSIONS",
                                         DEFAULT_MAX_SESSIONS, 0, integer=True)),
            max_shapes=int(env_number(environ, "AUTOTRACK_SOT_MAX_SHAPES", DEFAULT_MAX_SHAPES,
                                       1, integer=True)),
            limits=RequestLimits.from_env(environ),
        )


@dataclass(frozen=True)
class TrackerRequest:
    image: np.ndarray
    items: tuple[tuple[str, object], ...]  # ("init", box) or ("continue", SotState)
    ignored_fields: tuple[str, ...] = ()


class TrackerFunction(LambdaFunction[TrackerRequest]):
    """One SOT model answering CVAT tracker requests; kept in ``context.user_data``."""

    failure_subject = "this frame"

    def __init__(self, tracker: SingleObjectTracker,
                 settings: TrackerSettings | None = None) -> None:
        self.tracker = tracker
        self.settings = settings or TrackerSettings()

    def parse(self, body: object) -> TrackerRequest:
        limits = self.settings.limits
        payload = parse_json_object(body, limits)
        shapes, states = shapes_and_states(payload, self.settings.max_shapes,
                                           "AUTOTRACK_SOT_MAX_SHAPES")
        items: list[tuple[str, object]] = []
        for i, shape in enumerate(shapes):
            state = states[i] if i < len(states) else None
            if state is not None:
                items.append(("continue", self._state(state, i)))
            elif shape is not None:
                items.append(("init", shape_box(shape, i)))
            else:
                raise RequestError(f"'shapes[{i}]' and 'states[{i}]' are both null: nothing to "
                                   "track", field=f"shapes[{i}]")
        image = frame_of(payload, limits)
        for i, (what, value) in enumerate(items):
            check_on_frame(value if what == "init" else value.box, image,
                           f"shapes[{i}]" if what == "init" else f"states[{i}]")
        return TrackerRequest(image, tuple(items), tuple(
            sorted(str(k) for k in payload if k not in TRACKER_FIELDS)))

    def run(self, request: TrackerRequest) -> dict[str, list]:
        shapes, states = [], []
        for what, value in request.items:
            try:
                if what == "init":
                    state = self.tracker.init(request.image, value)
                    box = state.box
                else:
                    box, _, state = self.tracker.update(request.image, value)
            except StateError as exc:  # e.g. a template that does not decode
                raise RequestError(one_line(exc), field="states") from None
            shapes.append([round(float(v), 2) for v in box])
            states.append(state.encode())
        return {"shapes": shapes, "states": states}

    def describe(self, request: TrackerRequest, result: dict[str, list],
                 milliseconds: float) -> str:
        return f"tracked {len(result['shapes'])} objects in {milliseconds:.0f} ms"

    def _state(self, value: object, index: int) -> SotState:
        return request_state(value, index, MAX_SOT_STATE_BYTES,
                             lambda text: SotState.decode(text, self.tracker.kind))


def init_context(context: object, kind: str, settings: TrackerSettings | None = None,
                 **options: object) -> TrackerFunction:
    """Load the tracker once per worker and keep it in ``context.user_data`` (``options`` go
    to :func:`autotrack.sot.load_sot`; the environment fills what is not given)."""
    def build() -> TrackerFunction:
        ready = settings or TrackerSettings.from_env()
        store = SessionStore(ready.session_ttl_s, ready.max_sessions)
        return TrackerFunction(load_sot(kind, store, **options), ready)

    return install_function(context, f"the {kind} tracker", build, signs_states=True)


def handle(context: object, event: object) -> object:
    """Answer one CVAT tracker request with the tracker :func:`init_context` loaded."""
    return handle_loaded(context, event, TrackerFunction)


def frame_of(payload: Mapping[str, object], limits: RequestLimits) -> np.ndarray:
    """The request's decoded ``image``, refused when under the 2x2 pixels a SOT needs or
    thinner than 1:16 (a SOT's search region grows with the box: see MAX_FRAME_ASPECT)."""
    image, _ = decode_base64_image(payload.get("image"), limits)
    height, width = image.shape[:2]
    if min(height, width) < MIN_FRAME_SIDE:
        raise RequestError(f"'image' is {width}x{height} pixels; this tracker needs at least "
                           f"{MIN_FRAME_SIDE} pixels each way", field="image")
    if max(height, width) > MAX_FRAME_ASPECT * min(height, width):
        raise RequestError(f"'image' is {width}x{height} pixels; this tracker takes frames at "
                           f"most {MAX_FRAME_ASPECT} times longer one way than the other",
                           field="image")
    return image


def shape_rotation(shape: Mapping[str, object], where: str) -> float:
    """A CVAT shape's ``rotation`` in degrees (absent or null: 0), within one turn each way."""
    rotation = shape.get("rotation", 0)
    try:
        return 0.0 if rotation is None else parse_number(rotation, f"'{where}.rotation'",
                                                         low=-360, high=360)
    except NumberError as exc:
        raise RequestError(str(exc), field=where) from None


def request_state(value: object, index: int, max_bytes: int,
                  decode: Callable[[str], StateT]) -> StateT:
    """``states[index]`` of a tracker request, decoded; anything else than a state string this
    function wrote is a RequestError (413 when over ``max_bytes``, before any parsing)."""
    where = f"states[{index}]"
    if not isinstance(value, str):
        raise RequestError(f"'{where}' must be the state string this function returned, "
                           f"got {describe(value)}", field=where)
    if len(value) > max_bytes:
        raise RequestError(f"'{where}' is {len(value)} bytes, over the {max_bytes}-byte state "
                           "limit", status=413, field=where)
    try:
        return decode(value)
    except StateError as exc:
        raise RequestError(f"'{where}' is refused: {exc}", field=where) from None


def shapes_and_states(payload: Mapping[str, object], max_shapes: int,
                      limit_variable: str) -> tuple[list, list]:
    """CVAT's tracker request as two lists of equal length: ``shapes`` (None where an object
    continues) and ``states`` (shorter when objects start), refused when both are missing, when
    there are more states than shapes, or more shapes than ``max_shapes``."""
    shapes = optional_list(payload, "shapes")
    states = optional_list(payload, "states")
    if shapes is None and states is None:
        raise RequestError("send 'shapes' to start tracking or 'states' to continue",
                           field="shapes")
    shapes = [None] * len(states or []) if shapes is None else shapes
    states = [] if states is None else states
    if len(states) > len(shapes):
        raise RequestError(f"'states' has {len(states)} entries but 'shapes' only "
                           f"{len(shapes)}", field="states")
    if len(shapes) > max_shapes:
        raise RequestError(f"{len(shapes)} shapes in one request, over the limit of "
                           f"{max_shapes} ({limit_variable})", status=413, field="shapes")
    return shapes, states


def check_on_frame(box: tuple[float, float, float, float], image: np.ndarray, where: str) -> None:
    """RequestError unless at least a pixel each way of ``box`` lies on ``image``."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = box
    if min(x2, width) - max(x1, 0) < 1 or min(y2, height) - max(y1, 0) < 1:
        raise RequestError(f"'{where}' box {[round(v, 2) for v in box]} does not overlap the "
                           f"{width}x{height} image", field=where)


def optional_list(payload: Mapping[str, object], name: str) -> list | None:
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, list):
        raise RequestError(f"'{name}' must be a list, got {describe(value)}", field=name)
    return value


def shape_box(shape: object, index: int) -> tuple[float, float, float, float]:
    """``shapes[index]`` of a tracker request as x1 y1 x2 y2: bare points or a CVAT rectangle
    object (upright), or a RequestError."""
    where = f"shapes[{index}]"
    points = shape
    if isinstance(shape, dict):
        kind = shape.get("type", "rectangle")
        if kind != "rectangle":
            raise RequestError(f"'{where}' has type {quote(kind)}; this tracker follows "
                               "rectangles only", field=where)
        if shape_rotation(shape, where) % 360 != 0:
            raise RequestError(f"'{where}' is rotated; this tracker follows upright boxes only",
                               field=where)
        points = shape.get("points")
    try:
        return check_box(points, f"'{where}'")
    except ValueError as exc:
        raise RequestError(str(exc), field=where) from None
