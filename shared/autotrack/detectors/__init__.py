"""Detectors: pick one by registry name or file, get back something that honours Detector.

YOLOX on onnxruntime is the default because it is permissive (Apache-2.0) and needs no torch;
ultralytics models (AGPL-3.0) load only when asked for by name or file.
"""

from __future__ import annotations

from pathlib import Path

from autotrack.detectors.base import Detector, check_frame, class_filter, filter_detections
from autotrack.detectors.nms import nms
from autotrack.detectors.yolox import NotYoloxModelError, YoloxOnnxDetector
from autotrack.errors import AutotrackError, InputError, ModelNotFoundError
from autotrack.models import BUILT, REGISTRY, find_spec, resolve_model

DEFAULT_DETECTOR = "yolox-nano"
_ULTRALYTICS_SUFFIXES = {".pt", ".yaml", ".yml", ".torchscript"}
_ULTRALYTICS_PREFIXES = ("yolo", "rtdetr")

__all__ = [
    "DEFAULT_DETECTOR",
    "Detector",
    "YoloxOnnxDetector",
    "check_device",
    "check_frame",
    "class_filter",
    "filter_detections",
    "load_detector",
    "nms",
]


def load_detector(
    name_or_path: str | Path = DEFAULT_DETECTOR,
    *,
    min_score: float = 0.1,
    device: str | None = None,
    threads: int | None = None,
    batch: int = 1,
) -> Detector:
    """A detector for a registry name, a YOLOX or ultralytics ONNX file, or an ultralytics model.

    Raw YOLOX ONNX exports run on onnxruntime; any other ONNX file goes to ultralytics only when
    its metadata shows ultralytics exported it, since anything else would decode into garbage.
    ``threads`` (onnxruntime intra-op threads; None: its default) and ``batch`` (frames per
    call) apply to YOLOX; ultralytics batches through ``detect_batch`` and picks its own threads.
    """
    text = str(name_or_path)
    path = Path(text)
    spec = find_spec(text)
    if spec is not None and spec.kind != "detector":
        raise AutotrackError(f"{spec.name!r} is a {spec.kind} model, not a detector")
    if spec is not None and spec.published:  # autotrack finetune's rounds: ultralytics weights
        return _ultralytics(str(resolve_model(text)), min_score, device, spec.imgsz)
    if spec is not None or path.suffix.lower() == ".onnx":
        return _load_onnx(resolve_model(text), min_score, device, threads, batch)
    if path.suffix.lower() in _ULTRALYTICS_SUFFIXES or (
        not path.suffix and path.name.lower().startswith(_ULTRALYTICS_PREFIXES)
    ):
        return _ultralytics(text, min_score, device)
    known = ", ".join(name for name, s in {**REGISTRY, **BUILT}.items() if s.kind == "detector")
    raise ModelNotFoundError(
        f"unknown detector {text!r}: use a registry name ({known}), a model autotrack finetune "
        "published (autotrack models list), a YOLOX or ultralytics "
        ".onnx file, or an ultralytics model such as yolo11n.pt, yolo11n.yaml or rtdetr-l.pt"
    )


def _load_onnx(path: Path, min_score: float, device: str | None, threads: int | None = None,
               batch: int = 1) -> Detector:
    try:
        return YoloxOnnxDetector(path, min_score=min_score, providers=_onnx_providers(device),
                                 threads=threads, batch=batch)
    except NotYoloxModelError as not_yolox:
        if not _exported_by_ultralytics(path):
            raise AutotrackError(
                f"{path} is neither a raw YOLOX export nor an ultralytics export; "
                "no decoder for it here"
            ) from not_yolox
    return _ultralytics(str(path), min_score, device)


def _ultralytics(model: str, min_score: float, device: str | None,
                 imgsz: int | None = None) -> Detector:
    from autotrack.detectors.ultralytics import UltralyticsDetector  # optional AGPL extra

    return UltralyticsDetector(model, min_score=min_score, device=device,
                               **({"imgsz": imgsz} if imgsz else {}))


def _onnx_providers(device: str | None) -> list | None:
    """onnxruntime providers for a torch-style device string (``cuda:1`` picks the second
    GPU); CPU unless a GPU is asked for."""
    if device is None or str(device).lower() == "cpu":
        return None
    _, _, index = str(device).partition(":")
    cuda = ("CUDAExecutionProvider", {"device_id": int(index)}) if index.isdigit() \
        else "CUDAExecutionProvider"
    return [cuda, "CPUExecutionProvider"]


def check_device(detector: Detector, device: str | None) -> None:
    """InputError when a GPU was asked for but the YOLOX session fell back to the CPU (the
    onnxruntime installed has no CUDA provider): onnxruntime only warns, and a run meant
    for a GPU would crawl on the CPU."""
    providers = getattr(detector, "providers", None)
    if device is None or str(device).lower() == "cpu" or providers is None:
        return
    if "CUDAExecutionProvider" not in providers:
        raise InputError(f"--device {device}: this onnxruntime has no CUDA provider (it offers "
                         f"{', '.join(providers)}); pip uninstall onnxruntime, then "
                         'pip install "cvat-autotrack[cuda]"')


def _exported_by_ultralytics(path: Path) -> bool:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    metadata = session.get_modelmeta().custom_metadata_map
    return "names" in metadata and "stride" in metadata
