"""Ultralytics models as a cvat-sdk detection function for cvat-cli.

`cvat-cli task auto-annotate TASK --function-file functions/ultralytics.py [-p NAME=TYPE:VALUE]`.

Parameters (`-p name=type:value`): model=str:yolo11n.pt (any YOLOv8-v12, RT-DETR or *-seg
checkpoint, config or your best.pt), device=str:cpu, min_score=float:0.01, conf=float:0.5,
classes=str:person,car, masks=bool:false (boxes from a segmentation model).
Segmentation models give masks, or polygons with --conv-mask-to-poly.
The logic lives in autotrack.cvat.sdk.detection; ultralytics is AGPL-3.0.
"""

from autotrack.cvat.sdk.detection import create_ultralytics as create

__all__ = ["create"]
