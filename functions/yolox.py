"""YOLOX (ONNX, onnxruntime) as a cvat-sdk detection function for cvat-cli.

`cvat-cli task auto-annotate TASK --function-file functions/yolox.py [-p NAME=TYPE:VALUE]`.

Parameters (`-p name=type:value`): model=str:yolox-nano (registry name or a YOLOX .onnx),
device=str:cuda, min_score=float:0.01, conf=float:0.5, classes=str:person,car.
The logic lives in autotrack.cvat.sdk.detection.
"""

from autotrack.cvat.sdk.detection import create_yolox as create

__all__ = ["create"]
