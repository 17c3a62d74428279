"""Any autotrack detector as a cvat-sdk auto-annotation detection function.

`cvat-cli task auto-annotate TASK --function-file functions/yolox.py` (or `ultralytics.py`)
loads one of the thin files in `functions/`, which hand the `-p name=type:value` parameters to
:func:`create_yolox` or :func:`create_ultralytics`. What comes back implements cvat-sdk's
``DetectionFunction`` protocol: a ``spec`` naming the model's classes as labels and a ``detect``
method that turns one PIL image into rectangle, mask or polygon shapes.

Box models declare rectangle labels. Segmentation models declare mask labels and return masks
(CVAT's run-length encoding), or polygons when cvat-cli passes ``--conv-mask-to-poly``. Every
shape carries the model's confidence as its ``score``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import cvat_sdk.auto_annotation as cvataa
import cvat_sdk.models as cvat_models
import numpy as np
import PIL.Image

from autotrack.detections import Detections
from autotrack.detectors import DEFAULT_DETECTOR, Detector, class_filter, load_detector
from autotrack.detectors.base import makes_masks
from autotrack.detectors.yolox import YoloxOnnxDetector
from autotrack.errors import AutotrackError
from autotrack.masks import encode_cvat_mask, mask_to_polygon

DEFAULT_CONF = 0.5  # used when cvat-cli is run without --conf-threshold
DEFAULT_MIN_SCORE = 0.01  # the detector's own floor: any --conf-threshold above it is exact
DEFAULT_ULTRALYTICS_MODEL = "yolo11n.pt"
POLYGON_TOLERANCE = 1.0  # pixels a simplified polygon may stray from the mask's outline

# Older cvat-sdk releases have no confidence field on shapes; send it only where it exists.
_SHAPES_HAVE_SCORE = "score" in cvat_models.LabeledShapeRequest.attribute_map


class DetectorFunction:
    """cvat-sdk ``DetectionFunction`` around an autotrack :class:`Detector`.

    Label ids in the spec are the detector's class indices, so they stay the same whichever
    ``classes`` are picked. ``masks`` None asks the detector whether it segments; False turns a
    segmentation model into a box model; True on a box model is an error.
    """

    def __init__(
        self,
        detector: Detector,
        *,
        classes: Iterable[str] | str | None = None,
        conf: float = DEFAULT_CONF,
        masks: bool | None = None,
        polygon_tolerance: float = POLYGON_TOLERANCE,
    ) -> None:
        segments = makes_masks(detector)
        if masks and not segments:
            raise AutotrackError("masks were asked for, but this model does not segment")
        if not 0.0 <= float(conf) <= 1.0:
            raise AutotrackError(f"conf must be between 0 and 1, got {conf}")
        self.detector = detector
        self.masks = segments if masks is None else bool(masks)
        self.conf = float(conf)
        self.polygon_tolerance = float(polygon_tolerance)
        names = tuple(detector.class_names)
        picked = class_filter(names, _split_names(classes))
        self._class_ids = picked
        label_ids = range(len(names)) if picked is None else picked.tolist()
        label_type = "mask" if self.masks else "rectangle"
        self._spec = cvataa.DetectionFunctionSpec(
            labels=[cvataa.label_spec(names[i], int(i), type=label_type) for i in label_ids]
        )

    @property
    def spec(self) -> cvataa.DetectionFunctionSpec:
        return self._spec

    def detect(
        self, context: cvataa.DetectionFunctionContext, image: PIL.Image.Image
    ) -> list[cvat_models.LabeledShapeRequest]:
        threshold = self.conf if context.conf_threshold is None else float(context.conf_threshold)
        detections = self.detector.detect(pil_to_bgr(image))
        keep = detections.scores >= threshold
        if self._class_ids is not None:
            keep &= np.isin(detections.class_ids, self._class_ids)
        detections = detections.select(keep)
        if not len(detections):
            return []  # Detections.empty() carries no masks even from a segmentation model
        if not self.masks:
            return [
                _shape(cvataa.rectangle, label, box.tolist(), score)
                for box, score, label in _rows(detections)
            ]
        if detections.masks is None:
            raise AutotrackError("the segmentation model returned detections without masks")
        if context.conv_mask_to_poly:
            return self._polygons(detections)
        return self._masks(detections)

    def _masks(self, detections: Detections) -> list[cvat_models.LabeledShapeRequest]:
        shapes = []
        for (_, score, label), mask in zip(_rows(detections), detections.masks):
            encoded = encode_cvat_mask(mask)
            if encoded is not None:  # a detection whose mask is empty has nothing to draw
                shapes.append(_shape(cvataa.mask, label, encoded, score))
        return shapes

    def _polygons(self, detections: Detections) -> list[cvat_models.LabeledShapeRequest]:
        shapes = []
        for (_, score, label), mask in zip(_rows(detections), detections.masks):
            outline = mask_to_polygon(mask, self.polygon_tolerance)
            if outline is not None:
                shapes.append(_shape(cvataa.polygon, label, outline, score))
        return shapes


def create_detection_function(
    model: str | Path = DEFAULT_DETECTOR,
    *,
    device: str | None = None,
    min_score: float = DEFAULT_MIN_SCORE,
    conf: float = DEFAULT_CONF,
    classes: Iterable[str] | str | None = None,
    masks: bool | None = None,
) -> DetectorFunction:
    """A detection function for any model :func:`load_detector` takes.

    These are the ``-p`` parameters of the function files: ``model`` (registry name, file or
    ultralytics name), ``device`` (``cpu``, ``cuda``, ``cuda:1``), ``min_score`` (the lowest
    score the model reports at all), ``conf`` (threshold when cvat-cli has no
    ``--conf-threshold``), ``classes`` (comma-separated names: only these labels are declared
    and returned) and ``masks`` (False: rectangles even from a segmentation model).
    """
    detector = load_detector(model, min_score=min_score, device=device)
    return DetectorFunction(detector, classes=classes, conf=conf, masks=masks)


def create_yolox(model: str | Path = DEFAULT_DETECTOR, **params: object) -> DetectorFunction:
    """``create`` of ``functions/yolox.py``: YOLOX ONNX exports on onnxruntime."""
    function = create_detection_function(model, **params)  # type: ignore[arg-type]
    if not isinstance(function.detector, YoloxOnnxDetector):
        raise AutotrackError(
            f"{model} is not a YOLOX model; run it with functions/ultralytics.py"
        )
    return function


def create_ultralytics(
    model: str | Path = DEFAULT_ULTRALYTICS_MODEL, **params: object
) -> DetectorFunction:
    """``create`` of ``functions/ultralytics.py``: YOLOv8-v12, RT-DETR, YOLO-seg, custom."""
    function = create_detection_function(model, **params)  # type: ignore[arg-type]
    if isinstance(function.detector, YoloxOnnxDetector):
        raise AutotrackError(f"{model} is a YOLOX model; run it with functions/yolox.py")
    return function


def pil_to_bgr(image: PIL.Image.Image) -> np.ndarray:
    """HxWx3 uint8 BGR pixels of a PIL image in any mode (cvat-sdk hands over RGB or others)."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8)[:, :, ::-1])


def _split_names(classes: Iterable[str] | str | None) -> list[str] | None:
    """``-p classes=str:person,car`` arrives as one string; Python callers may pass a list."""
    if classes is None:
        return None
    items = classes.split(",") if isinstance(classes, str) else list(classes)
    names = [str(name).strip() for name in items if str(name).strip()]
    return names or None


def _rows(detections: Detections) -> Iterable[tuple[np.ndarray, float, int]]:
    for box, score, label in zip(detections.boxes, detections.scores, detections.class_ids):
        yield box, min(max(float(score), 0.0), 1.0), int(label)


def _shape(
    factory: Callable[..., cvat_models.LabeledShapeRequest],
    label: int,
    points: Sequence[float],
    score: float,
) -> cvat_models.LabeledShapeRequest:
    extra = {"score": score} if _SHAPES_HAVE_SCORE else {}
    return factory(label, [float(p) for p in points], **extra)
