"""Nuclio handler: YOLOX-Nano boxes (80 COCO classes) for CVAT's AI tools.

Request checks, inference and CVAT's response format live in autotrack.cvat.nuclio.detector
(tested in tests/test_nuclio.py). The model is baked into the image at build time
(function.yaml); AUTOTRACK_YOLOX_MODEL may name another raw YOLOX ONNX export.
"""

from pathlib import Path

from autotrack.cvat.nuclio import detector

MODEL = detector.DetectorFromEnv("AUTOTRACK_YOLOX_MODEL", "yolox-nano")


def init_context(context):
    detector.init_context(context, MODEL,
                                 function_yaml=Path(__file__).with_name("function.yaml"))


def handler(context, event):
    return detector.handle(context, event)
