"""Writers that turn whole-video tracks into files CVAT or MOT tools read.

``cvat-video`` (CVAT for video 1.1 XML) and ``json`` (CVAT API tracks) carry thinned
keyframes; ``mot`` keeps every tracked frame, for evaluation.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from autotrack.export.cvat_json import write_cvat_json
from autotrack.export.cvat_video import write_cvat_video
from autotrack.export.mot import write_mot
from autotrack.keyframes import DEFAULT_KEYFRAME_IOU
from autotrack.tracks import Track

EXPORT_FORMATS: tuple[str, ...] = ("cvat-video", "mot", "json")


def write_tracks(
    path: str | os.PathLike[str],
    fmt: str,
    tracks: Sequence[Track],
    class_names: Sequence[str],
    *,
    frame_count: int,
    width: int,
    height: int,
    min_iou: float = DEFAULT_KEYFRAME_IOU,
) -> None:
    """Write ``tracks`` to ``path`` in ``fmt``, one of :data:`EXPORT_FORMATS`."""
    if fmt == "cvat-video":
        write_cvat_video(
            path, tracks, class_names, frame_count=frame_count, width=width, height=height,
            task_name=os.path.splitext(os.path.basename(os.fspath(path)))[0], min_iou=min_iou,
        )
    elif fmt == "mot":
        write_mot(path, tracks)
    elif fmt == "json":
        write_cvat_json(
            path, tracks, class_names, min_iou=min_iou, frame_count=frame_count, width=width,
            height=height,
        )
    else:
        raise ValueError(f"unknown export format {fmt!r}; choose from {', '.join(EXPORT_FORMATS)}")


__all__ = ["EXPORT_FORMATS", "write_tracks"]
