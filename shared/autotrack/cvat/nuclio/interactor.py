"""Nuclio handler core for a CVAT ``type: interactor`` function (clicks and a box -> a mask).

What CVAT sends (``LambdaFunction.invoke`` in cvat/apps/lambda_manager/views.py): ``{"image":
<base64 frame>, "pos_points": [[x, y], ...], "neg_points": [[x, y], ...], "obj_bbox": ...}``.
``obj_bbox`` is null, ``[]``, or the box the user drew as two corners ``[[x1, y1], [x2, y2]]``
(function.yaml sets ``startswith_box_optional``); a flat ``[x1, y1, x2, y2]`` is accepted too.
Points are pixels of the frame; a point outside it is refused. The lambda manager hands the
answer to the UI untouched.

The answer is the one form every CVAT UI places where the object is (modelled from CVAT's
source in tests/cvat_ui.py):

- ``mask``: the WHOLE frame's rows of 0/1 (H lists of W). CVAT 2.60+ (cvat-core
  ``lambda-manager.ts`` ``call()``, PR #10329) run-length encodes ``mask`` and appends
  ``[0, 0, mask width - 1, mask height - 1]``, ignoring ``bounds`` and ``points``; a mask
  cropped to the object's box would land in the frame's top-left corner.
- ``bounds``: ``[0, 0, W - 1, H - 1]``, what the UIs before 2.60 (cvat-ui ``tools-control.tsx``
  ``runInteractionRequest``) append to the RLE: the same placement.
- ``points``: the outline of the mask's largest part as ``[[x, y], ...]`` in frame pixels,
  which the UIs before 2.60 simplify for "convert masks to polygons" and without which they
  do not draw (an empty list: nothing drawn).
- ``score``: the model's own quality estimate (no UI reads it).

No ``shapes`` key: 2.60+ reads the new ``{"shapes": [...]}`` form only where there is no
``mask``, and UIs before 2.60 cannot read it at all.

Nothing to segment (all clicks removed, or only negative clicks, and no box) and an empty mask
from the model are answered 200 with an all-zero frame mask and ``"points": []``, which every UI
draws as nothing: a 400 would show a sticky "Interaction error occurred" popup.

Size: the mask is ~2 bytes of JSON per pixel (1 MB on a 960x540 frame); answers over 16 KiB
are gzip-compressed when the request accepts it (:func:`autotrack.cvat.nuclio.base.respond`;
CVAT's lambda manager calls with ``requests``, which asks for gzip and decodes it, and Nuclio's
dashboard passes the encoding through), which brings an object's mask to a few KB.

Errors are answered as by every function here (:mod:`autotrack.cvat.nuclio.base`): 400 with
``{"error", "status", "field"}``, 413 for too much, 500 for a model failure, 503 before
:func:`init_context`. Settings: ``AUTOTRACK_INTERACTOR_MAX_POINTS`` (clicks per request,
default 64), the image limits of every function, and the model's variables
(:func:`autotrack.vos.factory.model_options`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import cv2
import numpy as np

from autotrack.cvat.nuclio.base import LambdaFunction, handle_loaded, install_function
from autotrack.cvat.nuclio.request import (
    MASK_MAX_IMAGE_PIXELS,
    RequestError,
    RequestLimits,
    decode_base64_image,
    parse_json_object,
)
from autotrack.masks import mask_to_polygon
from autotrack.numbers import MAX_COORDINATE, NumberError, describe, parse_numbers
from autotrack.settings import env_number
from autotrack.vos.base import Interactor, InteractorResult, ObjectPrompt
from autotrack.vos.factory import interactor_factory

DEFAULT_MAX_POINTS = 64
INTERACTOR_FIELDS = ("image", "pos_points", "neg_points", "obj_bbox")
POLYGON_TOLERANCE = 1.0


@dataclass(frozen=True)
class InteractorSettings:
    max_points: int = DEFAULT_MAX_POINTS
    limits: RequestLimits = field(
        default_factory=lambda: RequestLimits(max_image_pixels=MASK_MAX_IMAGE_PIXELS))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> InteractorSettings:
        environ = os.environ if environ is None else environ
        return cls(max_points=int(env_number(environ, "AUTOTRACK_INTERACTOR_MAX_POINTS",
                                              DEFAULT_MAX_POINTS, 1, integer=True)),
                   limits=RequestLimits.from_env(environ, max_image_pixels=MASK_MAX_IMAGE_PIXELS))


@dataclass(frozen=True)
class InteractorRequest:
    image: np.ndarray
    prompt: ObjectPrompt | None  # None: nothing to segment (no positive click, no box)
    ignored_fields: tuple[str, ...] = ()


class InteractorFunction(LambdaFunction[InteractorRequest]):
    """One interactor model answering CVAT requests; kept in ``context.user_data``."""

    failure_subject = "this frame"

    def __init__(self, interactor: Interactor, settings: InteractorSettings | None = None) -> None:
        self.interactor = interactor
        self.settings = settings or InteractorSettings()

    def parse(self, body: object) -> InteractorRequest:
        payload = parse_json_object(body, self.settings.limits)
        positive = _points(payload.get("pos_points"), "pos_points")
        negative = _points(payload.get("neg_points"), "neg_points")
        box = _box(payload.get("obj_bbox"))
        if len(positive) + len(negative) > self.settings.max_points:
            raise RequestError(f"{len(positive) + len(negative)} points in one request, over "
                               f"the limit of {self.settings.max_points} "
                               "(AUTOTRACK_INTERACTOR_MAX_POINTS)", status=413,
                               field="pos_points")
        image, _ = decode_base64_image(payload.get("image"), self.settings.limits)
        height, width = image.shape[:2]
        for name, points in (("pos_points", positive), ("neg_points", negative)):
            for k, (x, y) in enumerate(points):
                if not (0 <= x <= width and 0 <= y <= height):
                    raise RequestError(f"'{name}[{k}]' ({x:g}, {y:g}) lies outside the "
                                       f"{width}x{height} image", field=f"{name}[{k}]")
        if box is not None:
            x1, y1, x2, y2 = box
            box = (max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))
            if box[2] - box[0] < 1 or box[3] - box[1] < 1:
                raise RequestError(f"'obj_bbox' does not overlap the {width}x{height} image",
                                   field="obj_bbox")
        prompt = None
        if positive or box is not None:
            points = np.asarray(positive + negative, np.float32).reshape(-1, 2)
            labels = np.asarray([1] * len(positive) + [0] * len(negative), np.int32)
            prompt = ObjectPrompt(1, points=points, point_labels=labels, box=box)
        return InteractorRequest(image, prompt, tuple(
            sorted(str(k) for k in payload if k not in INTERACTOR_FIELDS)))

    def run(self, request: InteractorRequest) -> dict[str, object]:
        size = request.image.shape[:2]
        if request.prompt is None:  # nothing to segment: an empty answer, not an error
            return interactor_response(InteractorResult(np.zeros(size, bool), 0.0), size)
        result = self.interactor.segment(request.image, request.prompt)
        return interactor_response(result, size)

    def describe(self, request: InteractorRequest, result: dict[str, object],
                 milliseconds: float) -> str:
        clicks = 0 if request.prompt is None else len(request.prompt.points)
        pixels = sum(map(sum, result["mask"]))
        return f"mask of {pixels} pixels from {clicks} points in {milliseconds:.0f} ms"


def interactor_response(result: InteractorResult, size: tuple[int, int]) -> dict[str, object]:
    """The answer every CVAT UI places right: the whole frame's mask, its bounds, the outline
    in frame pixels and the score (see the module docstring)."""
    mask = np.asarray(result.mask, dtype=bool)
    if mask.shape != tuple(size) or not mask.size:
        raise RuntimeError(f"the interactor gave a {mask.shape} mask for a {size} frame")
    score = round(float(np.clip(result.score, 0.0, 1.0)), 4) if math.isfinite(result.score) \
        else 0.0
    height, width = mask.shape
    return {"mask": mask.astype(np.uint8).tolist(), "bounds": [0, 0, width - 1, height - 1],
            "points": _outline(mask), "score": score}


def _outline(mask: np.ndarray) -> list[list[float]]:
    """The largest part's outline in frame pixels, simplified to :data:`POLYGON_TOLERANCE`;
    for a part too small for three corners (a pixel, a line) its contour points as OpenCV
    gives them, which is what the UIs before 2.60 compute themselves when ``points`` is absent
    (so they still draw the mask); none for an empty mask."""
    if not mask.any():
        return []
    polygon = mask_to_polygon(mask, POLYGON_TOLERANCE)
    if polygon is None:
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        largest = max(contours, key=len).reshape(-1, 2)
        return [[float(x), float(y)] for x, y in largest]
    return [[polygon[k], polygon[k + 1]] for k in range(0, len(polygon), 2)]


def _points(value: object, name: str) -> list[tuple[float, float]]:
    """A list of [x, y] pairs (null or absent: none)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise RequestError(f"'{name}' must be a list of [x, y] points, got {describe(value)}",
                           field=name)
    points = []
    for k, point in enumerate(value):
        points.append(_pair(point, f"{name}[{k}]"))
    return points


def _pair(point: object, where: str) -> tuple[float, float]:
    """Two pixel coordinates, read by :mod:`autotrack.numbers`."""
    if not isinstance(point, (list, tuple)) or len(point) != 2:
        raise RequestError(f"'{where}' must be an [x, y] pair", field=where)
    try:
        x, y = parse_numbers(point, f"'{where}'", low=-MAX_COORDINATE, high=MAX_COORDINATE)
    except NumberError as exc:
        raise RequestError(str(exc), field=where) from None
    return x, y


def _box(value: object) -> tuple[float, float, float, float] | None:
    """``obj_bbox`` as x1 y1 x2 y2: two corners (either order) or four numbers; null or []
    is no box."""
    if value is None or value == []:
        return None
    if isinstance(value, list) and len(value) == 2:
        (ax, ay), (bx, by) = (_pair(p, f"obj_bbox[{k}]") for k, p in enumerate(value))
    elif isinstance(value, list) and len(value) == 4:
        ax, ay = _pair(value[:2], "obj_bbox")
        bx, by = _pair(value[2:], "obj_bbox")
    else:
        raise RequestError("'obj_bbox' must be two corners [[x1, y1], [x2, y2]]",
                           field="obj_bbox")
    box = (min(ax, bx), min(ay, by), max(ax, bx), max(ay, by))
    if not (box[2] > box[0] and box[3] > box[1]):
        raise RequestError(f"'obj_bbox' {list(box)} is empty: it needs x2 > x1 and y2 > y1",
                           field="obj_bbox")
    return box


def init_context(context: object, factory: Callable[[], Interactor] | None = None,
                 settings: InteractorSettings | None = None) -> InteractorFunction:
    """Load the interactor once per worker and keep it in ``context.user_data``."""
    def build() -> InteractorFunction:
        return InteractorFunction((factory or interactor_factory())(),
                                  settings or InteractorSettings.from_env())

    return install_function(context, "the interactor", build)


def handle(context: object, event: object) -> object:
    """Answer one CVAT interactor request with the model :func:`init_context` loaded."""
    return handle_loaded(context, event, InteractorFunction)


__all__ = ["InteractorFunction", "InteractorSettings", "handle", "init_context",
           "interactor_response"]
