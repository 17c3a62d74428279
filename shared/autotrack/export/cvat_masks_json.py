"""Mask tracks as CVAT REST API JSON (``{"shapes": [...], "tracks": [...]}``) for upload.

The JSON twin of :func:`autotrack.export.cvat_video.mask_tracks_xml`, with the same two
layouts and for the same reason (**CVAT has no mask tracks**: its track interpolation raises
``NotImplementedError`` for masks):

* masks (default): one ``LabeledShape`` of type ``mask`` per object and frame on which the
  object shows (CVAT shapes do not carry over to the next frame, so a mask held by one
  keyframe is repeated on every frame it covers), all of one object sharing a ``group``.
  ``points`` are CVAT's mask encoding: run lengths over the mask's box, row by row, starting
  with background, then the box's inclusive corners ``left, top, right, bottom`` (what
  :func:`autotrack.masks.encode_cvat_mask` gives and CVAT's ``cvat_rle_to_dm_rle`` reads).
* polygons (``polygons=True``): one ``LabeledTrack`` of ``polygon`` keyframes per object,
  the outline of each keyframe's largest part, laid out as the XML writer does: the held
  outline is repeated on the frame before each change (CVAT interpolates polygons, a
  repeated outline interpolates to itself), and ``outside`` keyframes carry the last outline.

Frames: a track's frame *indices* (0, 1, 2, ... over the frames that were processed) become
CVAT frame numbers through ``frame_numbers`` (one per index: a task's frames with deleted
ones left out), or ``first_frame + index``. Frames never processed get no shape; a polygon
track that shows on the last processed frame is closed by an ``outside`` keyframe on
``end_frame`` when given (a task that goes on past the processed frames would otherwise
show the track to its end).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

from autotrack.errors import InputError
from autotrack.vos.mask_tracks import polygon_keyframes


def _shape_fields(frame: int, points: list[float], shape_type: str) -> dict[str, Any]:
    return {"type": shape_type, "frame": int(frame), "points": points, "occluded": False,
            "z_order": 0, "rotation": 0.0, "attributes": []}


def _rle_points(rle) -> list[float]:
    return [float(int(v)) for v in rle]


def _label_id(label_ids: Mapping[str, int], track) -> int:
    try:
        return int(label_ids[track.label])
    except KeyError:
        known = ", ".join(repr(name) for name in label_ids) or "none"
        raise InputError(f"object {track.object_id} is labelled {track.label!r}, which has no "
                         f"label in the task (labels given: {known})") from None


def _mask_shapes(track, label_id: int, group: int, number, frame_count: int,
                 source: str) -> list[dict[str, Any]]:
    shapes = []
    for first, stop, keyframe in track.spans():
        if keyframe.outside:
            continue
        points = _rle_points(keyframe.rle)  # one list per keyframe, shared by its frames
        for index in range(first, min(stop, frame_count)):
            shapes.append({**_shape_fields(number(index), points, "mask"), "label_id": label_id,
                           "group": group, "source": source, "outside": False})
    return shapes


def mask_tracks_json(
    tracks: Sequence[Any], label_ids: Mapping[str, int], *, polygons: bool = False,
    frame_numbers: Sequence[int] | None = None, first_frame: int = 0,
    frame_count: int | None = None, end_frame: int | None = None, first_group: int = 1,
    source: str = "auto", polygon_tolerance: float = 1.0,
) -> dict[str, list[dict[str, Any]]]:
    """``{"shapes": [...], "tracks": [...]}`` for :class:`~autotrack.vos.mask_tracks.MaskTrack`
    s (module docstring), ready for ``PATCH .../annotations?action=create``.

    ``label_ids`` maps each track's label to a task label id (a label without one is an
    :class:`InputError` naming it). ``frame_count`` is how many frames were processed (default:
    the tracks' ``end``); with masks, objects get groups ``first_group``, ``first_group + 1``,
    ... in the order given (pick one above the task's existing groups: CVAT groups are
    task-wide). Tracks that never show a mask are left out."""
    kept = [t for t in tracks if any(not k.outside for k in t.keyframes)]
    if frame_count is None:
        frame_count = max((t.end for t in tracks), default=0)
    if frame_numbers is not None:
        numbers = [int(f) for f in frame_numbers]
        if len(numbers) < frame_count:
            raise ValueError(f"{len(numbers)} frame numbers for {frame_count} frames")
        if any(b <= a for a, b in pairwise(numbers)):
            raise ValueError("frame numbers must increase")
        number = numbers.__getitem__
    else:
        def number(index: int) -> int:
            return first_frame + index
    if end_frame is not None and frame_count and end_frame <= number(frame_count - 1):
        raise ValueError(f"end_frame {end_frame} is not after the last frame processed, "
                         f"{number(frame_count - 1)}")
    ids = {t.object_id: _label_id(label_ids, t) for t in kept}
    if first_group < 1:
        raise ValueError(f"groups start at 1, got {first_group}")
    shapes: list[dict[str, Any]] = []
    out_tracks: list[dict[str, Any]] = []
    if not polygons:
        for k, track in enumerate(kept):
            shapes.extend(_mask_shapes(track, ids[track.object_id], first_group + k, number,
                                       frame_count, source))
        shapes.sort(key=lambda s: s["frame"])
        return {"shapes": shapes, "tracks": out_tracks}
    for track in kept:
        keyframes = polygon_keyframes(track, frame_count, polygon_tolerance)
        if not keyframes:
            continue
        if end_frame is not None and not keyframes[-1][2]:
            keyframes.append((-1, keyframes[-1][1], True))  # closes on end_frame
        track_shapes = [
            {**_shape_fields(end_frame if index < 0 else number(index), points, "polygon"),
             "outside": outside}
            for index, points, outside in keyframes]
        out_tracks.append({"frame": track_shapes[0]["frame"], "label_id": ids[track.object_id],
                           "group": 0, "source": source, "attributes": [],
                           "shapes": track_shapes})
    return {"shapes": shapes, "tracks": out_tracks}
