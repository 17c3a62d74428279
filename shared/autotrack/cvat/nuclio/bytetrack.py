"""Nuclio handler core for ``serverless/bytetrack``: a detector and ByteTrack's association as a
CVAT ``type: tracker`` function (AI Tools -> Trackers), following the rectangles a person drew.

The request and answer are CVAT's tracker format, as for the single-object trackers
(:mod:`autotrack.cvat.nuclio.tracker`: ``{"image", "shapes", "states"}`` in, ``{"shapes",
"states"}`` out, one of each per object). A shape may be CVAT's shape object; its optional
``label`` (a class name such as ``"person"``) restricts the object to that detector class.
CVAT's UI sends no label, so the class is then taken from the detection the start box overlaps
(:class:`autotrack.trackers.given_objects.GivenObjectTracker`), else the object is
class-agnostic.

Per request the detector runs once, whatever the number of objects, and all continuing
objects are associated at once. Each state is a :class:`~autotrack.trackers.given_objects.
GivenObject` text (HMAC with ``AUTOTRACK_STATE_KEY``, at most 16 KiB) that holds everything:
there is no session store, and any worker continues any object exactly.

A lost object gets a box all the same (its prediction while it coasts, then its last box):
CVAT's UI fails the whole batch on a ``null`` shape (see the module docstring of
:mod:`autotrack.trackers.given_objects`).

Settings (function.yaml ``spec.env``): ``AUTOTRACK_BYTETRACK_DETECTOR`` (registry name or
model file, default ``yolox-nano``), ``AUTOTRACK_DEVICE``, ``AUTOTRACK_BYTETRACK_REID`` (the Re-ID
model of each object's appearance gallery, default ``person-reid-0248``; empty: off), ``AUTOTRACK_BYTETRACK_BUFFER``
(frames an object coasts, default 30), ``AUTOTRACK_BYTETRACK_MAX_SHAPES`` (objects per request,
default 64), ``AUTOTRACK_STATE_KEY`` and the image limits of the detector functions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from autotrack.cvat.nuclio.base import LambdaFunction, handle_loaded, install_function, one_line
from autotrack.cvat.nuclio.detector import DetectorFromEnv
from autotrack.cvat.nuclio.request import RequestError, RequestLimits, parse_json_object
from autotrack.cvat.nuclio.tracker import (
    TRACKER_FIELDS,
    check_on_frame,
    frame_of,
    request_state,
    shape_box,
    shapes_and_states,
)
from autotrack.detectors.base import Detector
from autotrack.errors import StateError
from autotrack.numbers import describe
from autotrack.settings import env_number
from autotrack.trackers.given_objects import (
    MAX_NAME_CHARS,
    MAX_OBJECT_STATE_BYTES,
    GivenObject,
    GivenObjectsConfig,
    GivenObjectTracker,
    Start,
)

DEFAULT_MAX_SHAPES = 64
DEFAULT_DETECTOR = "yolox-nano"
DEFAULT_REID = "person-reid-0248"  # AUTOTRACK_BYTETRACK_REID= (empty) turns appearance off


@dataclass(frozen=True)
class ByteTrackSettings:
    track_buffer: int = GivenObjectsConfig.track_buffer
    reid: str = DEFAULT_REID  # a Re-ID model name or file; "" for none
    max_shapes: int = DEFAULT_MAX_SHAPES
    limits: RequestLimits = field(default_factory=RequestLimits)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ByteTrackSettings:
        environ = os.environ if environ is None else environ
        return cls(
            track_buffer=int(env_number(environ, "AUTOTRACK_BYTETRACK_BUFFER",
                                        GivenObjectsConfig.track_buffer, 0, 100_000,
                                        integer=True)),
            reid=environ.get("AUTOTRACK_BYTETRACK_REID", DEFAULT_REID).strip(),
            max_shapes=int(env_number(environ, "AUTOTRACK_BYTETRACK_MAX_SHAPES",
                                      DEFAULT_MAX_SHAPES, 1, integer=True)),
            limits=RequestLimits.from_env(environ),
        )


@dataclass(frozen=True)
class ByteTrackRequest:
    image: np.ndarray
    items: tuple[GivenObject | Start, ...]
    ignored_fields: tuple[str, ...] = ()


class ByteTrackFunction(LambdaFunction[ByteTrackRequest]):
    """A detector and the given-objects tracker answering CVAT tracker requests."""

    failure_subject = "this frame"

    def __init__(self, tracker: GivenObjectTracker,
                 settings: ByteTrackSettings | None = None) -> None:
        self.tracker = tracker
        self.settings = settings or ByteTrackSettings()

    def parse(self, body: object) -> ByteTrackRequest:
        limits = self.settings.limits
        payload = parse_json_object(body, limits)
        shapes, states = shapes_and_states(payload, self.settings.max_shapes,
                                           "AUTOTRACK_BYTETRACK_MAX_SHAPES")
        items: list[GivenObject | Start] = []
        for i, shape in enumerate(shapes):
            state = states[i] if i < len(states) else None
            if state is not None:
                items.append(request_state(state, i, MAX_OBJECT_STATE_BYTES, self._decode))
            elif shape is not None:
                items.append(Start(shape_box(shape, i), shape_label(shape, i)))
            else:
                raise RequestError(f"'shapes[{i}]' and 'states[{i}]' are both null: nothing to "
                                   "track", field=f"shapes[{i}]")
        image = frame_of(payload, limits)
        for i, item in enumerate(items):
            check_on_frame(item.box, image,
                           f"shapes[{i}]" if isinstance(item, Start) else f"states[{i}]")
        return ByteTrackRequest(image, tuple(items), tuple(
            sorted(str(k) for k in payload if k not in TRACKER_FIELDS)))

    def run(self, request: ByteTrackRequest) -> dict[str, list]:
        try:
            results = self.tracker.step(request.image, request.items)
            states = [result.state.encode() for result in results]
        except StateError as exc:
            raise RequestError(one_line(exc), field="states") from None
        return {"shapes": [[round(float(v), 2) for v in r.box] for r in results],
                "states": states}

    def describe(self, request: ByteTrackRequest, result: dict[str, list],
                 milliseconds: float) -> str:
        started = sum(isinstance(item, Start) for item in request.items)
        return (f"tracked {len(result['shapes'])} objects ({started} started) in "
                f"{milliseconds:.0f} ms")

    def _decode(self, text: str) -> GivenObject:
        return GivenObject.decode(text, self.tracker.class_names)


def shape_label(shape: object, index: int) -> str | None:
    """The optional ``label`` (a class name) of a CVAT shape object; None when absent."""
    if not isinstance(shape, dict) or shape.get("label") is None:
        return None
    label = shape["label"]
    if not isinstance(label, str) or len(label) > MAX_NAME_CHARS:
        raise RequestError(f"'shapes[{index}].label' must be a class name of at most "
                           f"{MAX_NAME_CHARS} characters, got {describe(label)}",
                           field=f"shapes[{index}]")
    return label


def load_tracker(detector: Detector, settings: ByteTrackSettings) -> GivenObjectTracker:
    """The tracker for ``detector`` with the settings' buffer and optional Re-ID embedder."""
    embedder = None
    if settings.reid:
        from autotrack.reid import load_embedder

        device = os.environ.get("AUTOTRACK_DEVICE", "").strip() or None
        embedder = load_embedder(settings.reid, device=device)
    config = GivenObjectsConfig(track_buffer=settings.track_buffer)
    return GivenObjectTracker(detector, config, embedder=embedder)


def init_context(context: object, detector_factory: Callable[[], Detector] | None = None,
                 settings: ByteTrackSettings | None = None) -> ByteTrackFunction:
    """Load the detector (and Re-ID model) once per worker into ``context.user_data``."""
    factory = detector_factory or DetectorFromEnv("AUTOTRACK_BYTETRACK_DETECTOR",
                                                  DEFAULT_DETECTOR)

    def build() -> ByteTrackFunction:
        ready = settings or ByteTrackSettings.from_env()
        return ByteTrackFunction(load_tracker(factory(), ready), ready)

    return install_function(context, f"the ByteTrack tracker on {factory}", build,
                            signs_states=True)


def handle(context: object, event: object) -> object:
    """Answer one CVAT tracker request with the function :func:`init_context` loaded."""
    return handle_loaded(context, event, ByteTrackFunction)
