"""Nuclio handler core for CVAT detector functions; each serverless/*/nuclio/main.py is a few
lines calling :func:`init_context` and :func:`handle`.

What CVAT sends and parses (cvat/apps/lambda_manager/views.py): the request is
``{"image": base64, "threshold": number}`` (see :mod:`autotrack.cvat.nuclio.request`); the
response is a JSON list of shapes ``{"confidence": str, "label": name, "points": [...],
"type": ...}``. Boxes are ``"rectangle"`` with ``[x1, y1, x2, y2]``. Instance masks are
``"mask"`` shapes whose ``"mask"`` is the bitmap cut to the mask's box, row by row as 0/1,
followed by that box's inclusive corners ``[x1, y1, x2, y2]`` (CVAT run-length encodes it
itself), and whose ``"points"`` hold the outline as a polygon: CVAT turns the mask into that
polygon when the user ticks "convert masks to polygons". A request with
``"conv_mask_to_poly": true`` gets ``"polygon"`` shapes straight away.

Answers: 200 and the list; 4xx and ``{"error": ...}`` for a request the function will not run
(logged as a warning); 500 and ``{"error": ...}`` if the model fails (logged with its
traceback); 503 if :func:`init_context` never finished. No exception leaves :func:`handle`.

Settings come from the function's environment (function.yaml ``spec.env``):

==============================  =====================================================
``AUTOTRACK_DEVICE``            ``cpu`` (default) or ``cuda:0``
``AUTOTRACK_DEFAULT_THRESHOLD`` used when CVAT sends no threshold (default 0.5)
``AUTOTRACK_MIN_SCORE``         the detector's own floor (default 0.05): thresholds below
                                it act as it
``AUTOTRACK_MAX_IMAGE_BYTES``   decoded image size limit (default 24 MiB)
``AUTOTRACK_MAX_IMAGE_PIXELS``  pixel limit, checked from the header (default 8192x8192)
``AUTOTRACK_MAX_BODY_BYTES``    raw body limit (default 32 MiB, the trigger's limit)
``AUTOTRACK_MAX_MASK_PIXELS``   mask pixels answered per request, over all masks' boxes
                                (default 2**24, two 4K UHD frames: about 34 MB of JSON)
``AUTOTRACK_RELOAD_SECONDS``    with :func:`handle_reloading`: how often to look for a newer
                                round of a published model (default 0: never)
==============================  =====================================================

A function whose model is a family of rounds ``autotrack finetune`` publishes
(``AUTOTRACK_ULTRALYTICS_MODEL=street``: its newest round, read from a mounted models folder)
swaps in a new round without a rebuild: :func:`handle_reloading` looks at most every
``AUTOTRACK_RELOAD_SECONDS`` whether the name now means another file, loads it before
answering, and keeps serving the old one (and logs why) when the new one cannot be loaded or
has other classes than the label spec CVAT was given.

A mask costs CVAT's format two bytes of JSON per pixel of its box, so masks are answered best
score first until :data:`DEFAULT_MAX_MASK_PIXELS` is spent; the rest are left out and the
log line of the request says how many (a threshold that low on a frame that large is a
mistake, not a request worth a gigabyte).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autotrack.cvat.label_spec import (
    detector_shape_type,
    function_yaml_spec,
    label_spec,
    spec_problems,
)
from autotrack.cvat.nuclio.base import (
    LambdaFunction,
    ModelFromEnv,
    handle_loaded,
    log,
    one_line,
)
from autotrack.cvat.nuclio.request import (
    DetectorRequest,
    RequestLimits,
    parse_detector_request,
)
from autotrack.detections import Detections
from autotrack.detectors import Detector
from autotrack.masks import mask_box, mask_to_polygon
from autotrack.settings import env_number

DEFAULT_THRESHOLD = 0.5  # what CVAT's own detector functions use when none is sent
DEFAULT_MIN_SCORE = 0.05
POLYGON_TOLERANCE = 1.0  # pixels a polygon may stray from its mask's outline
DEFAULT_MAX_MASK_PIXELS = 2**24

__all__ = [
    "DEFAULT_MAX_MASK_PIXELS",
    "DEFAULT_MIN_SCORE",
    "DEFAULT_THRESHOLD",
    "CvatShapes",
    "DetectorFromEnv",
    "DetectorFunction",
    "FunctionSettings",
    "cvat_function_mask",
    "detections_to_cvat",
    "handle",
    "handle_reloading",
    "init_context",
]


@dataclass(frozen=True)
class FunctionSettings:
    """How a deployed function runs; :meth:`from_env` reads them from its environment."""

    device: str | None = None
    default_threshold: float = DEFAULT_THRESHOLD
    min_score: float = DEFAULT_MIN_SCORE
    polygon_tolerance: float = POLYGON_TOLERANCE
    limits: RequestLimits = field(default_factory=RequestLimits)
    max_mask_pixels: int = DEFAULT_MAX_MASK_PIXELS

    def __post_init__(self) -> None:
        for name in ("default_threshold", "min_score"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= 1):
                raise ValueError(f"{name} must lie between 0 and 1, got {value!r}")
        if not self.polygon_tolerance >= 0:
            raise ValueError(f"polygon_tolerance must be >= 0, got {self.polygon_tolerance!r}")
        if not self.max_mask_pixels >= 1:
            raise ValueError(f"max_mask_pixels must be >= 1, got {self.max_mask_pixels!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *,
                 max_image_pixels: int | None = None) -> FunctionSettings:
        """``max_image_pixels``: this kind of function's own default pixel limit."""
        environ = os.environ if environ is None else environ
        device = environ.get("AUTOTRACK_DEVICE", "").strip() or None
        return cls(
            device=None if device is None or device.lower() == "cpu" else device,
            default_threshold=_env_fraction(environ, "AUTOTRACK_DEFAULT_THRESHOLD",
                                            DEFAULT_THRESHOLD),
            min_score=_env_fraction(environ, "AUTOTRACK_MIN_SCORE", DEFAULT_MIN_SCORE),
            limits=RequestLimits.from_env(environ, max_image_pixels=max_image_pixels),
            max_mask_pixels=int(env_number(environ, "AUTOTRACK_MAX_MASK_PIXELS",
                                           DEFAULT_MAX_MASK_PIXELS, 1, integer=True)),
        )


class DetectorFromEnv(ModelFromEnv):
    """Detector factory for main.py: the model named by an environment variable, else a default,
    loaded with :func:`autotrack.detectors.load_detector` on ``AUTOTRACK_DEVICE``."""

    def __call__(self) -> Detector:
        from autotrack.detectors import load_detector

        settings = FunctionSettings.from_env()
        if _wants_gpu(settings.device) and _runs_on_onnxruntime(self.model):
            _preload_onnxruntime_cuda()
        return load_detector(self.model, min_score=settings.min_score, device=settings.device)


class DetectorFunction(LambdaFunction[DetectorRequest]):
    """One loaded detector answering CVAT requests; :func:`init_context` keeps it in user_data."""

    failure_subject = "this image"

    def __init__(self, detector: Detector, settings: FunctionSettings | None = None) -> None:
        self.detector = detector
        self.settings = settings or FunctionSettings()
        self.class_names = tuple(str(name) for name in detector.class_names)
        self.shape_type = detector_shape_type(detector)
        self.spec = label_spec(self.class_names, self.shape_type)  # refuses repeated names

    def parse(self, body: object) -> DetectorRequest:
        return parse_detector_request(body, self.settings.limits)

    def run(self, request: DetectorRequest) -> list[dict]:
        """The CVAT shapes for a checked request."""
        threshold = self.settings.default_threshold if request.threshold is None \
            else request.threshold
        detections = self.detector.detect(request.image)
        return detections_to_cvat(
            detections, self.class_names, threshold=threshold,
            conv_mask_to_poly=request.conv_mask_to_poly,
            polygon_tolerance=self.settings.polygon_tolerance,
            max_mask_pixels=self.settings.max_mask_pixels,
        )

    def describe(self, request: DetectorRequest, result: list[dict], milliseconds: float) -> str:
        height, width = request.image.shape[:2]
        return (f"{len(result)} shapes on a {width}x{height} {request.image_format} "
                f"in {milliseconds:.0f} ms{left_out_note(result)}")


def init_context(
    context: object,
    detector_factory: Callable[[], Detector],
    *,
    settings: FunctionSettings | None = None,
    function_yaml: str | Path | None = None,
) -> DetectorFunction:
    """Load the detector once per worker and keep it in ``context.user_data``.

    A model that fails to load is logged as one line saying why, then the error propagates so
    Nuclio marks the function as failed instead of serving errors. ``function_yaml`` (the file
    beside main.py) is compared with the model: a spec that does not match the model's classes
    is logged as a warning with the command that regenerates it.
    """
    started = time.perf_counter()
    try:
        settings = settings or FunctionSettings.from_env()
    except ValueError as exc:
        log(context, "error", f"autotrack: bad function settings: {exc}")
        raise
    log(context, "info", f"autotrack: loading detector {detector_factory}")
    try:
        detector = detector_factory()
        function = DetectorFunction(detector, settings)
    except Exception as exc:
        log(context, "error", f"autotrack: cannot load the detector {detector_factory}: "
                               f"{one_line(exc)}")
        raise
    for warning in _device_warnings(detector, settings.device):
        log(context, "warn", f"autotrack: {warning}")
    if function_yaml is not None:
        for problem in _spec_check(function_yaml, function):
            log(context, "warn", f"autotrack: {problem}")
    context.user_data.autotrack = function
    context.user_data.autotrack_version = _published_version(detector_factory)
    context.user_data.autotrack_checked = time.monotonic()
    log(context, "info",
         f"autotrack: ready in {time.perf_counter() - started:.1f} s: "
         f"{len(function.class_names)} classes as {function.shape_type} shapes, "
         f"default threshold {settings.default_threshold}, device {settings.device or 'cpu'}")
    return function


def handle(context: object, event: object) -> object:
    """Answer one CVAT request with the detector :func:`init_context` loaded."""
    return handle_loaded(context, event, DetectorFunction)


def handle_reloading(context: object, event: object,
                     detector_factory: Callable[[], Detector]) -> object:
    """:func:`handle`, after swapping in a newer published round of the model (module
    docstring) when ``AUTOTRACK_RELOAD_SECONDS`` is set."""
    try:
        _reload_if_published(context, detector_factory)
    except Exception as exc:  # never let the check cost an answer
        log(context, "error", f"autotrack: checking for a new model failed: {one_line(exc)}")
    return handle(context, event)


def _published_version(detector_factory: object) -> str | None:
    """``name:sha256`` of the published round a factory's model name means now, else None."""
    from autotrack.models import find_spec

    model = getattr(detector_factory, "model", None)
    spec = find_spec(model) if isinstance(model, str) else None
    return f"{spec.name}:{spec.sha256}" if spec is not None and spec.published else None


def _reload_if_published(context: object, detector_factory: Callable[[], Detector]) -> None:
    every = env_number(os.environ, "AUTOTRACK_RELOAD_SECONDS", 0.0, 0.0)
    data = getattr(context, "user_data", None)
    current = getattr(data, "autotrack", None)
    if not every or not isinstance(current, DetectorFunction):
        return
    now = time.monotonic()
    if now - getattr(data, "autotrack_checked", 0.0) < every:
        return
    data.autotrack_checked = now  # type: ignore[union-attr]
    version = _published_version(detector_factory)
    if version is None or version == getattr(data, "autotrack_version", None):
        return
    data.autotrack_version = version  # type: ignore[union-attr]  # tried once, either way
    name = version.split(":", 1)[0]
    try:
        function = DetectorFunction(detector_factory(), current.settings)
    except Exception as exc:
        log(context, "error", f"autotrack: cannot load {name}: {one_line(exc)}; still serving "
                              "the model loaded before")
        return
    if function.class_names != current.class_names or \
            function.shape_type != current.shape_type:
        log(context, "error", f"autotrack: {name} has classes {', '.join(function.class_names)}"
                              f" but this function declared {', '.join(current.class_names)} "
                              "to CVAT; still serving the model loaded before: redeploy the "
                              "function (autotrack finetune --deploy nuclio) to change labels")
        return
    data.autotrack = function  # type: ignore[union-attr]
    log(context, "info", f"autotrack: now serving {name}")


class CvatShapes(list):
    """A detector's answer (a JSON list of shapes) and how many masks the answer's pixel
    budget left out (for the log, never sent)."""

    left_out: int = 0


def left_out_note(result: object) -> str:
    left_out = getattr(result, "left_out", 0)
    return f"; {left_out} masks over AUTOTRACK_MAX_MASK_PIXELS left out" if left_out else ""


def detections_to_cvat(
    detections: Detections,
    class_names: Sequence[str],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    conv_mask_to_poly: bool = False,
    polygon_tolerance: float = POLYGON_TOLERANCE,
    max_mask_pixels: int = DEFAULT_MAX_MASK_PIXELS,
) -> CvatShapes:
    """The shapes CVAT's lambda manager reads from a detector function, best score first;
    masks only while the pixels of their (tight) boxes stay within ``max_mask_pixels``."""
    shapes = CvatShapes()
    masks = detections.masks
    budget = max_mask_pixels
    for i in np.argsort(-detections.scores, kind="stable"):
        score = float(detections.scores[i])
        if score < threshold:
            continue
        class_id = int(detections.class_ids[i])
        label = class_names[class_id] if 0 <= class_id < len(class_names) else str(class_id)
        shape: dict[str, object] = {"confidence": f"{min(max(score, 0.0), 1.0):.4f}",
                                    "label": label}
        mask = None if masks is None else masks[i]
        encoded = None
        if mask is not None and (box := mask_box(mask)) is not None:
            pixels = (box[2] - box[0] + 1) * (box[3] - box[1] + 1)
            if pixels > budget:
                shapes.left_out += 1
                continue
            budget -= pixels
            encoded = cvat_function_mask(mask, box)
        if encoded is None:  # a box model, or an empty mask: the box stands for it
            x1, y1, x2, y2 = (round(float(v), 2) for v in detections.boxes[i])
            shape.update(points=[x1, y1, x2, y2], type="rectangle")
        else:
            polygon = mask_to_polygon(mask, polygon_tolerance)
            if conv_mask_to_poly and polygon is not None:
                shape.update(points=polygon, type="polygon")
            else:  # as CVAT does, a mask too small for a polygon stays a mask
                shape.update(mask=encoded, type="mask")
                if polygon is not None:
                    shape["points"] = polygon
        shapes.append(shape)
    return shapes


def cvat_function_mask(mask: np.ndarray, box: tuple[int, int, int, int] | None = None
                       ) -> list[int] | None:
    """A (H, W) bool mask as a function hands it to CVAT: 0/1 per pixel of its tight box, row
    by row, then the box's inclusive corners [x1, y1, x2, y2]; None when the mask is empty.
    ``box``: that tight box, when the caller has it already."""
    box = mask_box(mask) if box is None else box
    if box is None:
        return None
    x1, y1, x2, y2 = box
    bits = np.asarray(mask[y1:y2 + 1, x1:x2 + 1], dtype=np.uint8).ravel().tolist()
    return [*bits, x1, y1, x2, y2]


def _spec_check(path: str | Path, function: DetectorFunction) -> list[str]:
    try:
        spec = function_yaml_spec(path)
    except ImportError:
        return []  # PyYAML is not in the image; the check is advice, not a requirement
    except (OSError, ValueError) as exc:
        return [f"cannot check the label spec in {path}: {exc}"]
    problems = spec_problems(spec, function.class_names, function.shape_type)
    if not problems:
        return []
    return [f"the label spec in {Path(path).name} does not match the model, so CVAT will "
            f"mislabel or drop shapes: {'; '.join(problems)}. Regenerate it with "
            "`python -m autotrack.cvat.label_spec MODEL --format yaml` and redeploy"]


def _device_warnings(detector: Detector, device: str | None) -> list[str]:
    """Why a function configured for a GPU may be running on the CPU after all."""
    if not _wants_gpu(device):
        return []
    from autotrack.detectors.yolox import YoloxOnnxDetector

    if isinstance(detector, YoloxOnnxDetector):
        import onnxruntime as ort

        available = ort.get_available_providers()
        if "CUDAExecutionProvider" not in available:
            return [f"AUTOTRACK_DEVICE={device} but onnxruntime offers only "
                    f"{', '.join(available)}: install onnxruntime-gpu; running on the CPU"]
        return []
    torch = sys.modules.get("torch")
    if torch is not None and not torch.cuda.is_available():
        return [f"AUTOTRACK_DEVICE={device} but torch sees no CUDA device"]
    return []


def _wants_gpu(device: str | None) -> bool:
    return device is not None and device.lower().startswith("cuda")


def _runs_on_onnxruntime(model: str) -> bool:
    from autotrack.models import find_spec

    return find_spec(model) is not None or model.lower().endswith(".onnx")


def _preload_onnxruntime_cuda() -> None:
    """Load CUDA and cuDNN from the nvidia-* wheels onnxruntime-gpu[cuda,cudnn] installs."""
    try:
        import onnxruntime as ort

        preload = getattr(ort, "preload_dlls", None)
        if preload is not None:
            preload()
    except Exception:  # an older onnxruntime, or libraries on the system path: let ORT look
        pass


def _env_fraction(environ: Mapping[str, str], name: str, default: float) -> float:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number between 0 and 1, got {text!r}") from None
    if not (math.isfinite(value) and 0 <= value <= 1):
        raise ValueError(f"{name} must be a number between 0 and 1, got {text!r}")
    return value
