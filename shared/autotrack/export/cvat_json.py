"""Tracks as CVAT REST API JSON (the ``LabeledTrack`` shape) for upload through cvat-sdk.

The plain dict is what the server's ``/api/tasks/{id}/annotations`` endpoint takes;
:func:`to_sdk_requests` turns it into cvat-sdk request objects, which validate it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from autotrack.export.cvat_video import used_class_ids
from autotrack.geometry import clip_boxes
from autotrack.keyframes import DEFAULT_KEYFRAME_IOU, Keyframe, thin_keyframes
from autotrack.tracks import Track


def _shape(k: Keyframe) -> dict[str, Any]:
    return {
        "type": "rectangle",
        "frame": k.frame,
        "points": [round(v, 2) + 0.0 for v in k.box],
        "outside": k.outside,
        "occluded": k.occluded,
        "z_order": 0,
        "rotation": 0.0,
        "attributes": [],
    }


def tracks_to_cvat_json(
    tracks: Sequence[Track],
    class_names: Sequence[str],
    *,
    min_iou: float = DEFAULT_KEYFRAME_IOU,
    frame_count: int | None = None,
    label_ids: Mapping[str, int] | None = None,
    source: str = "auto",
    width: int | None = None,
    height: int | None = None,
) -> dict[str, Any]:
    """``{"labels": [...], "tracks": [...]}`` with each track's thinned keyframes as shapes.

    ``label_ids`` maps names to the target task's label ids (the server rejects others);
    without it a label's id is its class index. ``frame_count`` stops a track that runs to
    the end of the video from getting an outside keyframe past it. With ``width`` and
    ``height`` boxes are clipped to the image before thinning, as in the XML export.
    """
    class_ids = used_class_ids(tracks, class_names)
    if label_ids is None:
        label_ids = {class_names[c]: c for c in class_ids}
    missing = [class_names[c] for c in class_ids if class_names[c] not in label_ids]
    if missing:
        raise ValueError(f"no label id given for {missing}")
    last_frame = None if frame_count is None else frame_count - 1
    out_tracks = []
    for track in tracks:
        if width is not None and height is not None:
            track = replace(track, boxes=clip_boxes(track.boxes, width, height))
        keyframes = thin_keyframes(track, min_iou, last_frame)
        if not keyframes:
            continue
        out_tracks.append({
            "frame": keyframes[0].frame,
            "label_id": int(label_ids[class_names[track.class_id]]),
            "group": 0,
            "source": source,
            "attributes": [],
            "shapes": [_shape(k) for k in keyframes],
        })
    labels = [{"id": int(label_ids[class_names[c]]), "name": class_names[c]} for c in class_ids]
    return {"labels": labels, "tracks": out_tracks}


def write_cvat_json(
    path: str | os.PathLike[str],
    tracks: Sequence[Track],
    class_names: Sequence[str],
    *,
    min_iou: float = DEFAULT_KEYFRAME_IOU,
    frame_count: int | None = None,
    label_ids: Mapping[str, int] | None = None,
    source: str = "auto",
    width: int | None = None,
    height: int | None = None,
) -> None:
    """Write :func:`tracks_to_cvat_json` as indented UTF-8 JSON."""
    document = tracks_to_cvat_json(
        tracks, class_names, min_iou=min_iou, frame_count=frame_count, label_ids=label_ids,
        source=source, width=width, height=height,
    )
    with open(path, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=2, ensure_ascii=False)
        f.write("\n")


def to_sdk_request(track: Mapping[str, Any]) -> Any:
    """One track dict as a ``cvat_sdk.models.LabeledTrackRequest`` (needs cvat-sdk)."""
    from cvat_sdk.api_client import models

    shapes = [
        models.TrackedShapeRequest(**{**shape, "type": models.ShapeType(shape["type"])})
        for shape in track["shapes"]
    ]
    return models.LabeledTrackRequest(**{**track, "shapes": shapes})


def to_sdk_requests(document: Mapping[str, Any]) -> list[Any]:
    """All tracks of a :func:`tracks_to_cvat_json` document as sdk request objects.

    Add them to a task with ``task.update_annotations(models.PatchedLabeledDataRequest(
    tracks=...), action=AnnotationUpdateAction.CREATE)``.
    """
    return [to_sdk_request(track) for track in document["tracks"]]
