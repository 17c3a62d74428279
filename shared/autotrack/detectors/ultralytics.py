"""Ultralytics YOLO / RT-DETR behind the Detector protocol (optional, AGPL-3.0 extra).

Imported lazily so the permissive core never loads it. Official `.pt` checkpoints are used when
the user has them; a `.yaml` builds random weights offline, which is how the plumbing is tested.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autotrack.coco import COCO_CLASSES
from autotrack.detections import Detections
from autotrack.detectors.base import check_frame
from autotrack.errors import AutotrackError, ModelNotFoundError
from autotrack.masks import polygons_to_masks
from autotrack.models import (
    ULTRALYTICS_CHECKPOINTS,
    ModelSpec,
    download,
    downloads_allowed,
    model_dirs,
    sha256_of,
)

INSTALL_HINT = 'pip install "cvat-autotrack[ultralytics]"'
_CONFIG_SUFFIXES = {".yaml", ".yml"}
_BOX_TASKS = {"detect", "segment", "pose"}


class UltralyticsDetector:
    """Any ultralytics detection model; boxes come back already NMS-ed and clipped."""

    def __init__(
        self,
        model: str | Path,
        min_score: float = 0.1,
        nms_iou: float = 0.7,
        device: str | None = None,
        imgsz: int = 640,
    ) -> None:
        ultralytics = _import_ultralytics()
        source = _locate(str(model))
        cls = ultralytics.RTDETR if "rtdetr" in Path(source).name.lower() else ultralytics.YOLO
        try:
            self._model = cls(source)
        except Exception as exc:  # ultralytics raises anything from FileNotFoundError to KeyError
            raise ModelNotFoundError(
                f"ultralytics cannot load {model!r}: {_one_line(exc)}"
            ) from exc
        task = getattr(self._model, "task", "detect")
        if task not in _BOX_TASKS:
            raise AutotrackError(f"{model!r} is an ultralytics {task} model, not a box detector")
        self.task = task  # "detect", "segment" or "pose"
        self.model_name = str(model)
        self.min_score = float(min_score)
        self.nms_iou = float(nms_iou)
        self.device = device
        self.imgsz = int(imgsz)
        self.class_names = _class_names(self._model.names)

    def detect(self, frame_bgr: np.ndarray) -> Detections:
        return self.detect_batch([frame_bgr])[0]

    def detect_batch(self, frames_bgr: Sequence[np.ndarray]) -> list[Detections]:
        """Detections of several frames from one ``predict`` call (one batch on a GPU)."""
        frames = [check_frame(frame) for frame in frames_bgr]
        results = self._model.predict(
            frames if len(frames) > 1 else frames[0],
            verbose=False,
            conf=self.min_score,
            iou=self.nms_iou,
            imgsz=self.imgsz,
            device=self.device,
        )
        return [_detections(result, frame.shape[:2]) for result, frame in zip(results, frames)]


def _detections(result: Any, shape: tuple[int, int]) -> Detections:
    boxes = result.boxes
    if boxes is None or len(boxes) == 0:
        return Detections.empty()
    masks = result.masks
    return Detections(
        boxes.xyxy.cpu().numpy().astype(np.float64),
        boxes.conf.cpu().numpy().astype(np.float64),
        boxes.cls.cpu().numpy().astype(np.int64),
        None if masks is None else polygons_to_masks(masks.xy, shape),
    )


def _import_ultralytics() -> Any:
    try:
        import ultralytics
    except ImportError as exc:
        raise ModelNotFoundError(
            f"ultralytics models need the optional ultralytics package (AGPL-3.0): {INSTALL_HINT}"
        ) from exc
    return ultralytics


def locate(model: str) -> str:
    """What ultralytics should load for ``model``: a file found here (a path, or an official
    name in AUTOTRACK_MODELS or ultralytics' weights folder), a config name, or, when downloads
    are allowed, the path ultralytics downloads an official checkpoint to. Offline and missing:
    ModelNotFoundError naming the folders and the URL."""
    return _locate(model)


def _locate(model: str) -> str:
    """What to hand to ultralytics: a file on disk, a config name, or a name it may download.

    Offline, a missing checkpoint is reported here instead of letting ultralytics try the network.
    """
    path = Path(model).expanduser()
    if path.suffix.lower() in _CONFIG_SUFFIXES:
        return model  # a path, or the name of a config bundled with ultralytics
    if not path.suffix:
        path = path.with_suffix(".pt")  # "yolo12n" means the official checkpoint, as in ultralytics
    if path.is_file():
        return str(path)
    searched = model_dirs() if path.name == str(path) else []
    known = ULTRALYTICS_CHECKPOINTS.get(path.name) if searched else None
    weights_dir = _weights_dir()
    for folder in [*searched, *([weights_dir] if weights_dir is not None else [])]:
        if (folder / path.name).is_file():
            return _checked(folder / path.name, known)
    where = ", ".join(str(d) for d in [*searched, *([weights_dir] if weights_dir else [])])
    if path.name != str(path):
        raise ModelNotFoundError(f"model file {path} does not exist")
    if path.suffix.lower() != ".pt":
        raise ModelNotFoundError(
            f"model file {path} not found here nor in {where}; "
            "set AUTOTRACK_MODELS to a folder that holds it"
        )
    url = known.url if known else _asset_url(path.name)
    if not downloads_allowed():
        digest = f" (sha256 {known.sha256})" if known else ""
        raise ModelNotFoundError(
            f"ultralytics checkpoint {path.name} is not in {where}; downloads are off "
            f"(AUTOTRACK_OFFLINE=1); get it from {url}{digest}; "
            "set AUTOTRACK_MODELS to a folder that holds it"
        )
    if known:
        return str(download(known, searched[0], searched=searched))  # sha256 checked
    return str(searched[0] / path.name)  # ultralytics downloads official names to this path


def _checked(path: Path, known: ModelSpec | None) -> str:
    """A found copy of an official checkpoint whose digest is known must be that file."""
    digest = sha256_of(path) if known is not None else None
    if known is not None and digest != known.sha256:
        raise ModelNotFoundError(
            f"{path} is not ultralytics' {known.name} (sha256 {digest}, expected "
            f"{known.sha256} from {known.url}): a damaged download or another model; remove "
            "it, or give it by another name or as a path"
        )
    return str(path)


def _weights_dir() -> Path | None:
    try:
        from ultralytics.utils import SETTINGS

        return Path(SETTINGS["weights_dir"])
    except Exception:  # settings layout differs between versions: only a search hint is lost
        return None


def _asset_url(name: str) -> str:
    """Where ultralytics downloads official checkpoints from (its release tag, if it tells)."""
    base = "https://github.com/ultralytics/assets/releases"
    try:
        from ultralytics.utils.downloads import attempt_download_asset

        release = inspect.signature(attempt_download_asset).parameters["release"].default
        return f"{base}/download/{release}/{name}"
    except Exception:
        return base


def _class_names(names: dict[int, str] | list[str]) -> tuple[str, ...]:
    """Names in index order; a config build labels COCO's 80 classes "0".."79", so name them."""
    listed = [names[i] for i in sorted(names)] if isinstance(names, dict) else list(names)
    if len(listed) == len(COCO_CLASSES) and listed == [str(i) for i in range(len(listed))]:
        return COCO_CLASSES
    return tuple(str(n) for n in listed)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
