"""Nuclio handler core for a CVAT ``type: reid`` function: which box of one frame is which box
of the next.

What CVAT sends (``LambdaFunction.invoke`` and ``LambdaJob._call_reid`` in
cvat/apps/lambda_manager/views.py): for each pair of consecutive frames that both have
rectangles, ``{"image0": base64, "image1": base64, "boxes0": [shape, ...], "boxes1": [shape,
...], "threshold": number, "max_distance": number}``. The shapes are CVAT's own annotation
records (``{"type": "rectangle", "points": [x1, y1, x2, y2], "label_id": 3, "frame": 7,
"rotation": 0.0, "id": ..., "path_id": ..., ...}``); only ``points``, ``label_id``, ``type`` and
``rotation`` are read here and the rest is ignored. ``threshold`` and ``max_distance`` are left
out when the user set none (or 0). A plain ``[x1, y1, x2, y2]`` list is accepted as a box too,
for scripts.

The answer is a JSON list with one integer per box of ``boxes0``: the index of the same object
in ``boxes1``, or -1. CVAT appends ``boxes1[index]`` to the track of ``boxes0[i]``, so each
index appears at most once.

How boxes are matched, as CVAT's own person-reidentification function does it (and with its
defaults, threshold 0.5 and max_distance 50):

- a pair is a candidate only when both boxes have the same ``label_id`` and their centres lie at
  most ``max_distance`` pixels apart (rotation does not move a rectangle's centre);
- each candidate costs the cosine distance between the Re-ID embeddings of the two crops (a
  rotated rectangle is cropped by its axis-aligned hull); every box with a candidate is embedded
  in one batched model call per image, and boxes without one are never embedded;
- the matching is an optimal assignment (:func:`autotrack.assignment.linear_assignment`), not a
  greedy one: among pairs costing at most ``threshold``, it maximises the total margin under the
  threshold; every other box gets -1. A zero-size box matches nothing.

Requests are checked as detector requests are (:mod:`autotrack.cvat.nuclio.request`: body and
image size limits, base64, image headers before decoding), plus the boxes: each must be a
rectangle of four finite numbers with x2 >= x1 and y2 >= y1 that overlaps its image; at most
``AUTOTRACK_REID_MAX_BOXES`` per image. Every problem is answered 400 (413 for the limits)
with ``{"error": ..., "status": ..., "field": ...}``; a model failure 500; a call before
:func:`init_context` finished 503. No exception leaves :func:`handle`.

Settings come from the function's environment (function.yaml ``spec.env``):

===============================  ====================================================
``AUTOTRACK_REID_MODEL``         the embedder main.py loads (default person-reid-0248)
``AUTOTRACK_DEVICE``             ``cpu`` (default) or ``cuda:0``
``AUTOTRACK_REID_THRESHOLD``     max cosine distance when CVAT sends none (default 0.5)
``AUTOTRACK_REID_MAX_DISTANCE``  max centre distance in pixels when none is sent (50)
``AUTOTRACK_REID_MAX_BOXES``     boxes allowed per image (default 1000)
``AUTOTRACK_REID_MAX_BATCH``     crops per model call (default 16; more run in chunks)
``AUTOTRACK_MAX_IMAGE_BYTES``,   as for the detector functions
``_MAX_IMAGE_PIXELS``,
``_MAX_BODY_BYTES``
===============================  ====================================================

Memory: the crops of one image go through the model in chunks of at most
``AUTOTRACK_REID_MAX_BATCH``, and an ONNX model runs without onnxruntime's memory pattern (a
buffer plan it keeps in its arena for every batch size it has seen). With onnxruntime's
defaults and chunks of 128 a worker settled 282 MiB above its loaded size after requests of 8
to 64 boxes an image (545 MiB with 200); with these settings 32-59 MiB above it, at the same
CPU time a request (docs/worker-memory.md).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from autotrack.assignment import linear_assignment
from autotrack.cvat.nuclio.base import (
    LambdaFunction,
    ModelFromEnv,
    handle_loaded,
    log,
    one_line,
)
from autotrack.cvat.nuclio.detector import (
    _preload_onnxruntime_cuda,
    _runs_on_onnxruntime,
    _wants_gpu,
)
from autotrack.cvat.nuclio.request import (
    RequestError,
    RequestLimits,
    _json_kind,
    decode_base64_image,
    parse_json_object,
)
from autotrack.settings import env_number

DEFAULT_REID_MODEL = "person-reid-0248"
DEFAULT_THRESHOLD = 0.5  # what CVAT's person-reidentification function uses
DEFAULT_MAX_DISTANCE = 50.0  # pixels, likewise
MAX_THRESHOLD = 2.0  # cosine distance of opposite vectors
MAX_BOXES = 1000
DEFAULT_MAX_BATCH = 16  # crops per model call: bounds the buffers onnxruntime keeps
REID_FIELDS = ("image0", "image1", "boxes0", "boxes1", "threshold", "max_distance")

__all__ = [
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_DISTANCE",
    "DEFAULT_REID_MODEL",
    "DEFAULT_THRESHOLD",
    "EmbedderFromEnv",
    "ReidBoxes",
    "ReidFunction",
    "ReidRequest",
    "ReidSettings",
    "handle",
    "init_context",
    "load_lean_embedder",
    "match_boxes",
    "parse_reid_request",
]


@dataclass(frozen=True)
class ReidBoxes:
    """The checked boxes of one image."""

    points: np.ndarray  # (N, 4) float64 [x1, y1, x2, y2] as sent
    label_ids: tuple[object, ...]  # per box: CVAT's label_id, or None (matches any label)
    rotations: np.ndarray  # (N,) degrees, 0 for plain boxes

    def __len__(self) -> int:
        return len(self.points)

    @property
    def centres(self) -> np.ndarray:
        return (self.points[:, :2] + self.points[:, 2:]) / 2

    @property
    def nonempty(self) -> np.ndarray:
        """Boxes with an area: only these are embedded and matched."""
        return (self.points[:, 2] > self.points[:, 0]) & (self.points[:, 3] > self.points[:, 1])

    def crop_boxes(self) -> np.ndarray:
        """Axis-aligned boxes to crop: the rectangles themselves, or rotated ones' hulls."""
        boxes = self.points.copy()
        turned = self.rotations % 360 != 0
        if turned.any():
            angle = np.deg2rad(self.rotations[turned])
            half_w = (boxes[turned, 2] - boxes[turned, 0]) / 2
            half_h = (boxes[turned, 3] - boxes[turned, 1]) / 2
            extent_x = np.abs(half_w * np.cos(angle)) + np.abs(half_h * np.sin(angle))
            extent_y = np.abs(half_w * np.sin(angle)) + np.abs(half_h * np.cos(angle))
            centre = self.centres[turned]
            boxes[turned] = np.stack([centre[:, 0] - extent_x, centre[:, 1] - extent_y,
                                      centre[:, 0] + extent_x, centre[:, 1] + extent_y], axis=1)
        return boxes


@dataclass(frozen=True)
class ReidRequest:
    """A checked reid request: both frames, both box sets, and what the caller asked for."""

    image0: np.ndarray  # HxWx3 uint8 BGR
    image1: np.ndarray
    boxes0: ReidBoxes
    boxes1: ReidBoxes
    threshold: float | None  # max cosine distance; None: the function's default
    max_distance: float | None  # max centre distance in pixels; None: the default
    ignored_fields: tuple[str, ...] = field(default=())


def parse_reid_request(
    body: object, limits: RequestLimits | None = None, *, max_boxes: int = MAX_BOXES
) -> ReidRequest:
    """The request in a Nuclio event body (a dict, or JSON bytes/str), or RequestError.

    Cheap checks come first: the numbers and the box lists are checked before either image is
    decoded, and the boxes against the image sizes after.
    """
    limits = limits or RequestLimits()
    if body is None or (isinstance(body, (bytes, bytearray, str))
                        and len(body) <= limits.max_body_bytes and not body.strip()):
        raise RequestError("request body is empty; expected a JSON object with 'image0', "
                           "'image1', 'boxes0' and 'boxes1'")
    payload = parse_json_object(body, limits)
    threshold = _optional_number(payload.get("threshold"), "threshold", 0.0, MAX_THRESHOLD,
                                 "a cosine distance")
    max_distance = _optional_number(payload.get("max_distance"), "max_distance", 0.0, None,
                                    "pixels between box centres")
    boxes0 = parse_boxes(payload.get("boxes0"), "boxes0", max_boxes)
    boxes1 = parse_boxes(payload.get("boxes1"), "boxes1", max_boxes)
    image0, _ = decode_base64_image(payload.get("image0"), limits, field="image0")
    image1, _ = decode_base64_image(payload.get("image1"), limits, field="image1")
    check_boxes_in_image(boxes0, image0.shape, "boxes0", "image0")
    check_boxes_in_image(boxes1, image1.shape, "boxes1", "image1")
    return ReidRequest(
        image0=image0, image1=image1, boxes0=boxes0, boxes1=boxes1,
        threshold=threshold, max_distance=max_distance,
        ignored_fields=tuple(sorted(str(key) for key in payload if key not in REID_FIELDS)),
    )


def parse_boxes(value: object, name: str, max_boxes: int = MAX_BOXES) -> ReidBoxes:
    """A list of CVAT rectangle shapes (or [x1, y1, x2, y2] lists), or RequestError."""
    if value is None:
        raise RequestError(f"'{name}' is missing: send a list of rectangles", field=name)
    if not isinstance(value, list):
        raise RequestError(f"'{name}' must be a list of rectangles, got {_json_kind(value)}",
                           field=name)
    if len(value) > max_boxes:
        raise RequestError(
            f"'{name}' has {len(value)} boxes, over the limit of {max_boxes} "
            "(AUTOTRACK_REID_MAX_BOXES)", status=413, field=name)
    points = np.zeros((len(value), 4))
    rotations = np.zeros(len(value))
    label_ids: list[object] = []
    for i, item in enumerate(value):
        where = f"{name}[{i}]"
        if isinstance(item, dict):
            shape_type = item.get("type", "rectangle")
            if shape_type != "rectangle":
                shown = shape_type if isinstance(shape_type, str) else _json_kind(shape_type)
                raise RequestError(
                    f"'{where}' has type {shown[:40]}; only rectangles can be matched",
                    field=name)
            coords = item.get("points")
            label = item.get("label_id")
            if label is not None and (isinstance(label, bool)
                                      or not isinstance(label, (int, str))):
                raise RequestError(
                    f"'{where}.label_id' must be an integer, got {_json_kind(label)}",
                    field=name)
            label_ids.append(label)
            rotation = item.get("rotation")
            if rotation is not None:
                rotations[i] = _finite(rotation, f"{where}.rotation", name, single=True)
            where = f"{where}.points"
        elif isinstance(item, list):
            coords = item
            label_ids.append(None)
        else:
            raise RequestError(
                f"'{where}' must be a rectangle shape {{\"points\": [x1, y1, x2, y2], ...}} "
                f"or an [x1, y1, x2, y2] list, got {_json_kind(item)}", field=name)
        if not isinstance(coords, list):
            raise RequestError(
                f"'{where}' must be [x1, y1, x2, y2], got {_json_kind(coords)}", field=name)
        if len(coords) != 4:
            raise RequestError(
                f"'{where}' must be [x1, y1, x2, y2], got {len(coords)} numbers", field=name)
        points[i] = [_finite(v, where, name) for v in coords]
        x1, y1, x2, y2 = points[i]
        if x2 < x1 or y2 < y1:
            raise RequestError(
                f"'{where}' has a negative size: [{x1:g}, {y1:g}, {x2:g}, {y2:g}] must have "
                "x2 >= x1 and y2 >= y1", field=name)
    return ReidBoxes(points, tuple(label_ids), rotations)


def check_boxes_in_image(boxes: ReidBoxes, shape: tuple[int, ...], name: str,
                         image: str) -> None:
    """RequestError for the first box off its image: a box with an area must share some of it
    with the image, and a zero-size box must at least touch the image."""
    if not len(boxes):
        return
    height, width = shape[:2]
    p = boxes.crop_boxes()
    # a box with an area must share some of it with the image; a zero-size one must touch it
    no_area = (p[:, 2] <= 0) | (p[:, 3] <= 0) | (p[:, 0] >= width) | (p[:, 1] >= height)
    apart = (p[:, 2] < 0) | (p[:, 3] < 0) | (p[:, 0] > width) | (p[:, 1] > height)
    outside = np.where(boxes.nonempty, no_area, apart)
    if outside.any():
        i = int(np.argmax(outside))
        x1, y1, x2, y2 = boxes.points[i]
        raise RequestError(
            f"'{name}[{i}]' [{x1:g}, {y1:g}, {x2:g}, {y2:g}] lies outside the "
            f"{width}x{height} {image}", field=name)


def match_boxes(
    embedder: object,
    request: ReidRequest,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    max_distance: float = DEFAULT_MAX_DISTANCE,
) -> list[int]:
    """For each box of image0, the index of the matching box of image1, or -1.

    ``threshold`` and ``max_distance`` apply where the request carries none. ``embedder`` is an
    :class:`autotrack.reid.Embedder`; it is called at most once per image.
    """
    threshold = threshold if request.threshold is None else request.threshold
    max_distance = max_distance if request.max_distance is None else request.max_distance
    boxes0, boxes1 = request.boxes0, request.boxes1
    candidates = candidate_mask(boxes0, boxes1, max_distance)
    rows = candidates.any(axis=1).nonzero()[0]
    cols = candidates.any(axis=0).nonzero()[0]
    distances = np.full(candidates.shape, np.inf)
    if len(rows) and len(cols):
        emb0 = _embed(embedder, request.image0, boxes0.crop_boxes()[rows], "image0")
        emb1 = _embed(embedder, request.image1, boxes1.crop_boxes()[cols], "image1")
        cosine = 1.0 - emb0 @ emb1.T  # a zero row (no pixels to embed) is 1 from all
        np.clip(cosine, 0.0, MAX_THRESHOLD, out=cosine)
        block = np.ix_(rows, cols)
        distances[block] = np.where(candidates[block], cosine, np.inf)
    matching = linear_assignment(distances, threshold)
    result = [-1] * len(boxes0)
    for row, col in zip(matching.rows.tolist(), matching.cols.tolist()):
        result[row] = col
    return result


def candidate_mask(boxes0: ReidBoxes, boxes1: ReidBoxes, max_distance: float) -> np.ndarray:
    """(N0, N1) bool: pairs that may match (same label, centres close, both non-empty)."""
    if not len(boxes0) or not len(boxes1):
        return np.zeros((len(boxes0), len(boxes1)), dtype=bool)
    delta = boxes0.centres[:, None, :] - boxes1.centres[None, :, :]
    mask = np.hypot(delta[..., 0], delta[..., 1]) <= max_distance
    mask &= boxes0.nonempty[:, None] & boxes1.nonempty[None, :]
    if any(label is not None for label in boxes0.label_ids + boxes1.label_ids):
        codes: dict[object, int] = {}  # each label as a small integer; None (any label) as -1

        def code(label: object) -> int:
            return -1 if label is None else codes.setdefault((type(label), label), len(codes))

        a = np.array([code(label) for label in boxes0.label_ids])[:, None]
        b = np.array([code(label) for label in boxes1.label_ids])[None, :]
        mask &= (a == b) | (a < 0) | (b < 0)
    return mask


def _embed(embedder: object, frame: np.ndarray, boxes: np.ndarray, image: str) -> np.ndarray:
    features = np.asarray(embedder.embed(frame, boxes))  # type: ignore[attr-defined]
    if features.ndim != 2 or len(features) != len(boxes):
        raise RuntimeError(f"the embedder returned shape {features.shape} for {len(boxes)} "
                           f"boxes of {image}")
    if not np.isfinite(features).all():
        raise RuntimeError(f"the embedder returned non-finite values for {image}")
    features = features.astype(np.float64)
    norms = np.linalg.norm(features, axis=1, keepdims=True)  # unit already, by the API
    return np.divide(features, norms, out=np.zeros_like(features), where=norms > 0)


# --- the Nuclio function ------------------------------------------------------------------------


@dataclass(frozen=True)
class ReidSettings:
    """How a deployed reid function runs; :meth:`from_env` reads them from its environment."""

    device: str | None = None
    default_threshold: float = DEFAULT_THRESHOLD
    default_max_distance: float = DEFAULT_MAX_DISTANCE
    max_boxes: int = MAX_BOXES
    limits: RequestLimits = field(default_factory=RequestLimits)
    max_batch: int = DEFAULT_MAX_BATCH

    def __post_init__(self) -> None:
        if not (_is_number(self.default_threshold)
                and 0 <= self.default_threshold <= MAX_THRESHOLD):
            raise ValueError(f"default_threshold must lie between 0 and {MAX_THRESHOLD:g}, "
                             f"got {self.default_threshold!r}")
        if not (_is_number(self.default_max_distance) and self.default_max_distance >= 0):
            raise ValueError("default_max_distance must be a finite number >= 0, "
                             f"got {self.default_max_distance!r}")
        if isinstance(self.max_boxes, bool) or not isinstance(self.max_boxes, int) \
                or self.max_boxes <= 0:
            raise ValueError(f"max_boxes must be a positive integer, got {self.max_boxes!r}")
        if isinstance(self.max_batch, bool) or not isinstance(self.max_batch, int) \
                or self.max_batch <= 0:
            raise ValueError(f"max_batch must be a positive integer, got {self.max_batch!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ReidSettings:
        environ = os.environ if environ is None else environ
        device = environ.get("AUTOTRACK_DEVICE", "").strip() or None
        return cls(
            device=None if device is None or device.lower() == "cpu" else device,
            default_threshold=env_number(environ, "AUTOTRACK_REID_THRESHOLD",
                                          DEFAULT_THRESHOLD, 0.0, MAX_THRESHOLD),
            default_max_distance=env_number(environ, "AUTOTRACK_REID_MAX_DISTANCE",
                                             DEFAULT_MAX_DISTANCE, 0.0, None),
            max_boxes=int(env_number(environ, "AUTOTRACK_REID_MAX_BOXES", MAX_BOXES, 1, None,
                                      integer=True)),
            limits=RequestLimits.from_env(environ),
            max_batch=int(env_number(environ, "AUTOTRACK_REID_MAX_BATCH", DEFAULT_MAX_BATCH, 1,
                                      None, integer=True)),
        )


class EmbedderFromEnv(ModelFromEnv):
    """Embedder factory for main.py: the model named by an environment variable, else a
    default, loaded on ``AUTOTRACK_DEVICE`` by :func:`load_lean_embedder`."""

    def __call__(self) -> object:
        settings = ReidSettings.from_env()
        if _wants_gpu(settings.device) and _runs_on_onnxruntime(self.model):
            _preload_onnxruntime_cuda()
        return load_lean_embedder(self.model, device=settings.device)


def load_lean_embedder(name_or_path: str, *, device: str | None = None) -> object:
    """:func:`autotrack.reid.load_embedder`, except that a Re-ID ONNX model (a registry name or
    an ``.onnx`` file) runs without onnxruntime's memory pattern: with it, every batch size seen
    leaves its own planned buffer in the arena, which is how a worker grew by hundreds of MB."""
    from autotrack.models import find_spec, resolve_model
    from autotrack.reid import load_embedder

    text = str(name_or_path)
    spec = find_spec(text)
    onnx = spec.kind == "reid" if spec is not None else text.lower().endswith(".onnx")
    if not onnx:  # torch checkpoints, and the errors for what is not a Re-ID model
        return load_embedder(text, device=device)
    providers = None
    if device is not None and device.lower() != "cpu":
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    from autotrack.reid.onnx_embedder import OnnxReidEmbedder

    return OnnxReidEmbedder(resolve_model(text), providers=providers, memory_pattern=False)


class ReidFunction(LambdaFunction[ReidRequest]):
    """One loaded embedder answering CVAT reid requests; :func:`init_context` keeps it in
    user_data."""

    failure_subject = "these images"

    def __init__(self, embedder: object, settings: ReidSettings | None = None) -> None:
        if not callable(getattr(embedder, "embed", None)):
            raise TypeError(f"{type(embedder).__name__} has no embed(frame, boxes) method")
        self.embedder = embedder
        self.settings = settings or ReidSettings()
        batch = getattr(embedder, "max_batch", None)  # a CropEmbedder's chunk of crops
        if isinstance(batch, int) and not isinstance(batch, bool) \
                and batch > self.settings.max_batch:
            embedder.max_batch = self.settings.max_batch  # type: ignore[attr-defined]

    def parse(self, body: object) -> ReidRequest:
        return parse_reid_request(body, self.settings.limits, max_boxes=self.settings.max_boxes)

    def run(self, request: ReidRequest) -> list[int]:
        return match_boxes(self.embedder, request,
                           threshold=self.settings.default_threshold,
                           max_distance=self.settings.default_max_distance)

    def describe(self, request: ReidRequest, result: list[int], milliseconds: float) -> str:
        return (f"matched {sum(m >= 0 for m in result)} of {len(request.boxes0)} boxes to "
                f"{len(request.boxes1)} in {milliseconds:.0f} ms")


def init_context(
    context: object,
    embedder_factory: Callable[[], object],
    *,
    settings: ReidSettings | None = None,
) -> ReidFunction:
    """Load the embedder once per worker and keep it in ``context.user_data``.

    A model that fails to load is logged as one line saying why, then the error propagates so
    Nuclio marks the function as failed instead of serving errors.
    """
    started = time.perf_counter()
    try:
        settings = settings or ReidSettings.from_env()
    except ValueError as exc:
        log(context, "error", f"autotrack: bad function settings: {exc}")
        raise
    log(context, "info", f"autotrack: loading embedder {embedder_factory}")
    try:
        function = ReidFunction(embedder_factory(), settings)
    except Exception as exc:
        log(context, "error", f"autotrack: cannot load the embedder {embedder_factory}: "
                               f"{one_line(exc)}")
        raise
    model = str(getattr(embedder_factory, "model", "") or "")
    if _wants_gpu(settings.device) and model and _runs_on_onnxruntime(model):
        import onnxruntime as ort

        available = ort.get_available_providers()
        if "CUDAExecutionProvider" not in available:
            log(context, "warn",
                 f"autotrack: AUTOTRACK_DEVICE={settings.device} but onnxruntime offers only "
                 f"{', '.join(available)}: install onnxruntime-gpu; running on the CPU")
    context.user_data.autotrack = function
    log(context, "info",
         f"autotrack: ready in {time.perf_counter() - started:.1f} s: default threshold "
         f"{settings.default_threshold}, max_distance {settings.default_max_distance} px, "
         f"{getattr(function.embedder, 'max_batch', '?')} crops a model call, "
         f"device {settings.device or 'cpu'}")
    return function


def handle(context: object, event: object) -> object:
    """Answer one CVAT reid request with the embedder :func:`init_context` loaded."""
    return handle_loaded(context, event, ReidFunction)


# --- helpers ------------------------------------------------------------------------------------


def _is_number(value: object) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and math.isfinite(value))


def _finite(value: object, where: str, name: str, *, single: bool = False) -> float:
    """A JSON number as a finite float, or RequestError naming where it was."""
    what, finite = ("be a number", "be a finite number") if single else \
        ("hold numbers", "hold finite numbers")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(f"'{where}' must {what}, got {_json_kind(value)}", field=name)
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        shown = value if isinstance(value, float) else "a huge integer"
        raise RequestError(f"'{where}' must {finite}, got {shown}", field=name)
    return number


def _optional_number(value: object, name: str, low: float, high: float | None,
                     meaning: str) -> float | None:
    """A finite number in [low, high] (high None: unbounded); None when absent."""
    if value is None:
        return None
    bounds = f"between {low:g} and {high:g}" if high is not None else f"{low:g} or more"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(f"'{name}' must be a number {'' if high else 'of '}{bounds} "
                           f"({meaning}), got {_json_kind(value)}", field=name)
    number = _finite(value, name, name, single=True)
    if number < low or (high is not None and number > high):
        raise RequestError(f"'{name}' must be {bounds} ({meaning}), got {number:g}",
                           field=name)
    return number
