"""Nuclio handler core for a CVAT ``type: tracker`` function that follows objects as masks
(SAM2, XMem), and the session logic it shares with the cvat-sdk door.

What CVAT sends (``LambdaFunction.invoke`` in cvat/apps/lambda_manager/views.py) is what the
SOT trackers get (:mod:`autotrack.cvat.lambda_tracker`): ``{"image", "shapes", "states"}``,
shapes to start, states to continue, one entry per object, states handed back as the JSON
value this function returned (CVAT signs them, 8 hours). CVAT's UI tracks rectangles only and
sends each as its bare ``[x1, y1, x2, y2]``; scripts may send CVAT shape objects
``{"type": "rectangle" | "polygon" | "mask", "points": [...]}`` (a mask's points are CVAT's
RLE: run lengths over its box, then the box's inclusive corners).

The answer is ``{"shapes": [...], "states": [...], "types": [...]}``, one of each per object.
Each shape comes back as the type it was given, as bare ``points``: a rectangle as the box of
the object's mask (the UI draws it; a lost object keeps its last box), a polygon as the
outline of the mask's largest part, a mask as CVAT's RLE; a lost polygon or mask is ``null``.
``AUTOTRACK_VOS_OUTPUT=mask`` or ``polygon`` (or ``"conv_mask_to_poly": true`` in a request)
returns every object as masks or polygons instead; ``types`` says which each one is.

All objects started in one request share one segmenter (one image encoding per frame for all
of them) kept in this worker's :class:`~autotrack.sot.SessionStore`; each state
(:class:`~autotrack.vos.mask_state.MaskTrackState`) carries the start frame and mask, so
another worker, or this one after the session expired, starts the object again from it.

Problems are answered as by every function here: 400 with ``{"error", "status", "field"}``,
413 for what is too large, 500 for a model failure, 503 before :func:`init_context`.
Settings (``spec.env``): ``AUTOTRACK_VOS_SESSION_TTL`` (seconds, default 900),
``AUTOTRACK_VOS_MAX_SESSIONS`` (live segmenters per worker, default 4: each holds a model's
memory of past frames), ``AUTOTRACK_VOS_MAX_SHAPES`` (objects per request, default 32),
``AUTOTRACK_VOS_OUTPUT``, ``AUTOTRACK_STATE_KEY`` and the image limits of every function.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from autotrack.cvat.lambda_base import LambdaFunction, handle_loaded, install_function
from autotrack.cvat.lambda_request import (
    RequestError,
    RequestLimits,
    decode_base64_image,
    parse_json_object,
)
from autotrack.cvat.lambda_request import env_number
from autotrack.cvat.lambda_tracker import request_state, shapes_and_states
from autotrack.errors import StateError
from autotrack.sot.session import DEFAULT_TTL_S, Session, SessionStore
from autotrack.vos.base import ObjectPrompt, VideoSegmenter
from autotrack.vos.mask_state import (
    MAX_MASK_STATE_BYTES,
    MaskTrackState,
    ShapePrompt,
    shape_points,
    shape_prompt,
)

DEFAULT_MAX_SHAPES = 32
DEFAULT_MAX_SESSIONS = 4
OUTPUTS = ("shape", "mask", "polygon")
TRACKER_FIELDS = ("image", "shapes", "states", "conv_mask_to_poly")
MASK_KINDS = ("sam2", "xmem")

SegmenterFactory = Callable[[], VideoSegmenter]


# --- the session logic both doors share ----------------------------------------------------


@dataclass
class LiveGroup:
    """One live segmenter and the last mask (digest) it gave each of its objects."""

    segmenter: VideoSegmenter
    objects: dict[int, str]


class MaskTracker:
    """Starts objects on a frame and follows them, using a live segmenter where one is left
    at the states' step and starting the objects again from their states where not.

    Segmenters come from ``factory`` (called under a lock, so concurrent requests never get
    one segmenter, i.e. one memory, between them); a stale session's segmenter is dropped.
    Live segmenters are kept in ``store``, or in the ``store`` a call names (the cvat-sdk
    door gives each shape its own, kept in the agent's tracking state).
    """

    def __init__(self, kind: str, factory: SegmenterFactory, store: SessionStore) -> None:
        self.kind = kind
        self.factory = factory
        self.store = store
        self.reinits = 0  # groups started again from their states
        self._lock = threading.Lock()

    def start(self, image: np.ndarray, prompts: Sequence[ShapePrompt], *,
              store: SessionStore | None = None) -> list[tuple[np.ndarray, MaskTrackState]]:
        """Start every prompt as an object of one new session on ``image``."""
        store = self.store if store is None else store
        session = SessionStore.new_id()
        segmenter = self._segmenter()
        objects = [self._object_prompt(k + 1, p.box, p.mask)
                   for k, p in enumerate(prompts)]
        masks = segmenter.step(image, objects)
        out = []
        for k, prompt in enumerate(prompts):
            mask = _mask_of(masks, k + 1, image)
            out.append((mask, MaskTrackState.start(self.kind, image, prompt, mask,
                                                   session=session, object_id=k + 1)))
        self._keep(store, session, segmenter, [state for _, state in out])
        return out

    def follow(self, image: np.ndarray, states: Sequence[MaskTrackState], *,
               store: SessionStore | None = None) -> list[tuple[np.ndarray, MaskTrackState]]:
        """Every state one frame on (``image``); the order of ``states`` is kept."""
        store = self.store if store is None else store
        out: list[tuple[np.ndarray, MaskTrackState] | None] = [None] * len(states)
        groups: dict[str, list[int]] = {}
        for index, state in enumerate(states):
            groups.setdefault(state.session, []).append(index)
        for session, indices in groups.items():
            group = [states[i] for i in indices]
            live = store.take(session)
            if live is not None and _matches(live, group):
                results = self._step_live(store, live.tracker, session, image, group)
            else:  # a stale live segmenter (if any) is dropped with ``live``
                results = self._restart(store, image, group)
            for index, result in zip(indices, results):
                out[index] = result
        return out  # type: ignore[return-value]

    def _step_live(self, store: SessionStore, live: LiveGroup, session: str, image: np.ndarray,
                   group: list[MaskTrackState]) -> list[tuple[np.ndarray, MaskTrackState]]:
        wanted = {state.object_id for state in group}
        for object_id in set(live.objects) - wanted:  # no longer followed: free its memory
            live.segmenter.forget(object_id)
        masks = live.segmenter.step(image)
        results = [(mask := _mask_of(masks, s.object_id, image),
                    s.advanced(mask, session=session)) for s in group]
        self._keep(store, session, live.segmenter, [state for _, state in results])
        return results

    def _restart(self, store: SessionStore, image: np.ndarray,
                 group: list[MaskTrackState]) -> list[tuple[np.ndarray, MaskTrackState]]:
        """Objects started again on their stored start frame, then stepped to ``image``; one
        new session per start frame (a session's objects normally share one)."""
        by_prompt: dict[str, list[int]] = {}
        for k, state in enumerate(group):
            by_prompt.setdefault(state.prompt_digest, []).append(k)
        results: list = [None] * len(group)
        for indices in by_prompt.values():
            members = [group[k] for k in indices]
            session = SessionStore.new_id()
            segmenter = self._segmenter()
            prompts = [self._object_prompt(s.object_id, *s.restart_prompt()) for s in members]
            segmenter.step(members[0].prompt_frame(), prompts)
            masks = segmenter.step(image)
            self.reinits += 1
            for k, state in zip(indices, members):
                mask = _mask_of(masks, state.object_id, image)
                results[k] = (mask, state.advanced(mask, session=session))
            self._keep(store, session, segmenter, [results[k][1] for k in indices])
        return results

    @staticmethod
    def _object_prompt(object_id: int, box, mask) -> ObjectPrompt:
        if mask is not None:
            return ObjectPrompt(object_id, mask=mask)
        return ObjectPrompt(object_id, box=box)

    @staticmethod
    def _keep(store: SessionStore, session: str, segmenter: VideoSegmenter,
              states: Sequence[MaskTrackState]) -> None:
        live = LiveGroup(segmenter, {s.object_id: s.last_digest for s in states})
        store.put(session, Session(tracker=live, step=states[0].step,
                                   box=(0.0, 0.0, 0.0, 0.0), last_used=0.0))

    def _segmenter(self) -> VideoSegmenter:
        with self._lock:  # a factory is not thread-safe (see _FirstThenBuild)
            return self.factory()


def _matches(live: Session, group: list[MaskTrackState]) -> bool:
    objects = live.tracker.objects
    return all(s.step == live.step and objects.get(s.object_id) == s.last_digest for s in group)


def _mask_of(masks: Mapping[int, np.ndarray], object_id: int, image: np.ndarray) -> np.ndarray:
    mask = masks.get(object_id)
    if mask is None:
        return np.zeros(image.shape[:2], bool)
    mask = np.asarray(mask)
    if mask.shape != image.shape[:2]:
        raise RuntimeError(f"the segmenter gave object {object_id} a {mask.shape} mask on a "
                           f"{image.shape[:2]} frame")
    return mask.astype(bool, copy=False)


# --- the Nuclio function ------------------------------------------------------------------


@dataclass(frozen=True)
class MaskTrackerSettings:
    session_ttl_s: float = DEFAULT_TTL_S
    max_sessions: int = DEFAULT_MAX_SESSIONS
    max_shapes: int = DEFAULT_MAX_SHAPES
    output: str = "shape"
    limits: RequestLimits = field(default_factory=RequestLimits)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> MaskTrackerSettings:
        environ = os.environ if environ is None else environ
        output = environ.get("AUTOTRACK_VOS_OUTPUT", "").strip() or "shape"
        if output not in OUTPUTS:
            raise ValueError(f"AUTOTRACK_VOS_OUTPUT must be one of {', '.join(OUTPUTS)}, "
                             f"got {output!r}")
        return cls(
            session_ttl_s=env_number(environ, "AUTOTRACK_VOS_SESSION_TTL", DEFAULT_TTL_S, 1e-3),
            max_sessions=int(env_number(environ, "AUTOTRACK_VOS_MAX_SESSIONS",
                                         DEFAULT_MAX_SESSIONS, 0, integer=True)),
            max_shapes=int(env_number(environ, "AUTOTRACK_VOS_MAX_SHAPES", DEFAULT_MAX_SHAPES,
                                       1, integer=True)),
            output=output,
            limits=RequestLimits.from_env(environ),
        )


@dataclass(frozen=True)
class MaskTrackerRequest:
    image: np.ndarray
    items: tuple[tuple[str, object], ...]  # ("init", ShapePrompt) or ("continue", state)
    conv_mask_to_poly: bool = False
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
        poly = payload.get("conv_mask_to_poly", False)
        if not isinstance(poly, bool):
            raise RequestError("'conv_mask_to_poly' must be true or false",
                               field="conv_mask_to_poly")
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
        return MaskTrackerRequest(image, tuple(items), poly, tuple(
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
        shapes, states, types = [], [], []
        for mask, state in results:
            kind = self._output_type(state.shape_type, request.conv_mask_to_poly)
            shapes.append(shape_points(kind, mask, state.last_box))
            states.append(state.encode())
            types.append(kind)
        return {"shapes": shapes, "states": states, "types": types}

    def describe(self, request: MaskTrackerRequest, result: dict[str, list],
                 milliseconds: float) -> str:
        lost = sum(shape is None for shape in result["shapes"])
        return (f"tracked {len(result['shapes'])} objects ({lost} lost) in "
                f"{milliseconds:.0f} ms")

    def _output_type(self, shape_type: str, conv_mask_to_poly: bool) -> str:
        kind = shape_type if self.settings.output == "shape" else self.settings.output
        return "polygon" if conv_mask_to_poly and kind == "mask" else kind

    def _state(self, value: object, index: int) -> MaskTrackState:
        return request_state(value, index, MAX_MASK_STATE_BYTES,
                             lambda text: MaskTrackState.decode(text, self.tracker.kind))


def _shape_fields(shape: object, index: int) -> tuple[str, object]:
    """(type, points) of a bare rectangle or a CVAT shape object."""
    where = f"shapes[{index}]"
    if isinstance(shape, list):
        return "rectangle", shape
    if not isinstance(shape, dict):
        raise RequestError(f"'{where}' must be a rectangle's [x1, y1, x2, y2] or a shape "
                           f"object, got {type(shape).__name__}", field=where)
    kind = shape.get("type", "rectangle")
    if kind not in ("rectangle", "polygon", "mask"):
        raise RequestError(f"'{where}' is a {kind!r}; this tracker follows rectangles, "
                           "polygons and masks", field=where)
    rotation = shape.get("rotation", 0) or 0
    if kind == "rectangle" and (isinstance(rotation, bool) or
                                not isinstance(rotation, (int, float)) or rotation % 360 != 0):
        raise RequestError(f"'{where}' is rotated; this tracker follows upright boxes only",
                           field=where)
    if not isinstance(shape.get("points"), list):
        raise RequestError(f"'{where}' has no 'points' list", field=where)
    return kind, shape["points"]


# --- models and Nuclio entry points -------------------------------------------------------


def segmenter_factory(kind: str, environ: Mapping[str, str] | None = None,
                      **options: object) -> SegmenterFactory:
    """A factory of ``kind``'s segmenters, all sharing one copy of the weights (a new one
    costs only its memory). The weights load here, so a missing checkpoint fails at start-up
    with its one-line error, not on the first request. ``options`` (``checkpoint``,
    ``config``, ``image_size`` / ``size``, ``device``, ``random_init``) win over the
    environment (:func:`model_options`)."""
    settings = model_options(kind, os.environ if environ is None else environ, **options)
    if kind == "sam2":
        from autotrack.vos.sam2 import Sam2Segmenter, build_sam2_model

        model = build_sam2_model(**settings)
        return lambda: Sam2Segmenter(model)
    from autotrack.vos.xmem import XMemSegmenter, build_xmem_segmenter

    first = build_xmem_segmenter(**settings)
    return _FirstThenBuild(first, lambda: XMemSegmenter(first.network, first.budget,
                                                        size=first.size, device=first.device))


class _FirstThenBuild:
    """A factory that hands out one prebuilt segmenter first, then builds new ones; safe to
    call from several threads (the prebuilt one goes to exactly one caller)."""

    def __init__(self, first: VideoSegmenter, build: SegmenterFactory) -> None:
        self._first: VideoSegmenter | None = first
        self._build = build
        self._lock = threading.Lock()

    def __call__(self) -> VideoSegmenter:
        with self._lock:
            first, self._first = self._first, None
        return first if first is not None else self._build()


def model_options(kind: str, environ: Mapping[str, str], *, checkpoint: str | None = None,
                  config: str | None = None, image_size: int | None = None,
                  size: int | None = None, device: str | None = None,
                  random_init: bool | None = None) -> dict[str, object]:
    """Builder keywords for ``kind`` ("sam2" or "xmem"): each given option, else its variable.

    SAM2: ``AUTOTRACK_SAM2_CHECKPOINT`` (read by the builder), ``AUTOTRACK_SAM2_CONFIG``
    (default sam2.1_hiera_t), ``AUTOTRACK_SAM2_IMAGE_SIZE`` (default 1024). XMem:
    ``AUTOTRACK_XMEM_CHECKPOINT`` (read by the builder), ``AUTOTRACK_XMEM_SIZE`` (default 480).
    Both: ``AUTOTRACK_DEVICE`` (default cpu) and ``AUTOTRACK_<KIND>_RANDOM_INIT=1``, seeded
    random weights for tests and benchmarks only (a deployed function names a checkpoint)."""
    if kind not in MASK_KINDS:
        raise ValueError(f"unknown mask model {kind!r}: one of {', '.join(MASK_KINDS)}")
    prefix = f"AUTOTRACK_{kind.upper()}_"
    options: dict[str, object] = {
        "device": device or environ.get("AUTOTRACK_DEVICE", "").strip() or "cpu"}
    checkpoint = checkpoint or environ.get(prefix + "CHECKPOINT", "").strip()
    if random_init is None:
        random_init = environ.get(prefix + "RANDOM_INIT", "").strip() in ("1", "true", "yes")
    if random_init:
        options["random_init"] = True
    elif checkpoint:
        options["checkpoint"] = checkpoint
    if kind == "sam2":
        config = config or environ.get(prefix + "CONFIG", "").strip()
        if config:
            options["config"] = config
        if image_size:
            options["image_size"] = int(image_size)
        elif environ.get(prefix + "IMAGE_SIZE", "").strip():
            options["image_size"] = int(env_number(environ, prefix + "IMAGE_SIZE", 1024, 128,
                                                    integer=True))
    else:
        options["size"] = int(size or env_number(environ, prefix + "SIZE", 480, 16,
                                                  integer=True))
    return options


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


__all__ = ["MaskTracker", "MaskTrackerFunction", "MaskTrackerSettings", "handle",
           "init_context", "model_options", "segmenter_factory"]
