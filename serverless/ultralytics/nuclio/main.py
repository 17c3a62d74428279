"""Nuclio handler: any ultralytics model (YOLOv8-v12, RT-DETR, -seg masks) for CVAT's AI tools.

Request checks, inference and CVAT's response format live in autotrack.cvat.nuclio.detector
(tested in tests/test_nuclio.py). AUTOTRACK_ULTRALYTICS_MODEL names the model (default
yolo11n.pt, baked into the image at build time); a model with other classes needs the label
spec in function.yaml regenerated: python -m autotrack.cvat.label_spec MODEL --format yaml.
With AUTOTRACK_RELOAD_SECONDS set, a model autotrack finetune publishes into a mounted folder
(a family name: its newest round) is swapped in without a rebuild (docs/finetune.md).
"""

from pathlib import Path

from autotrack.cvat.nuclio import detector

MODEL = detector.DetectorFromEnv("AUTOTRACK_ULTRALYTICS_MODEL", "yolo11n.pt")


def init_context(context):
    detector.init_context(context, MODEL,
                                 function_yaml=Path(__file__).with_name("function.yaml"))


def handler(context, event):
    return detector.handle_reloading(context, event, MODEL)
