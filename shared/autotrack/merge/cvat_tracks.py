"""CVAT tracks as CVAT stores them (JSON of ``LabeledTrack`` + ``TrackedShape`` rows): what
each shows on a frame, and several pieces of one object joined into one track.

Shared by the task door (``autotrack task merge``, job by job over the REST API) and the
offline door (``autotrack merge`` on CVAT for video XML), so both join the same way.

**What a track shows** follows CVAT's ``TrackManager.get_interpolated_shapes``
(cvat/apps/dataset_manager/annotation.py): every row is a keyframe; a visible keyframe holds
(or moves linearly towards the next keyframe, for boxes, ellipses and polygons of as many
points) until the next one; an ``outside`` keyframe hides the object until the next visible one.

**Joining** follows the UI's merge (``_mergeInternal`` in cvat-core's
annotations-collection.ts) where it is sound, and is stricter where it is not:

* every keyframe of every piece is kept (a visible keyframe wins over an outside one on the
  same frame); leading outside keyframes are dropped; the track starts at its first keyframe;
* pieces must share the label and the shape type; masks and skeletons are refused (the UI
  refuses masks too);
* two visible shapes on one frame are refused, and so are pieces whose shown spans overlap
  (the UI only checks keyframes, and makes a zig-zag of them), with the frames named, unless
  ``trim``: the shorter piece loses the frames it shares with the longer one;
* the gap between two pieces stays hidden (an ``outside`` keyframe on the frame after the
  earlier piece's last shown frame, as the UI does after a shape) or, with ``bridge``, is
  interpolated from the last box of one piece to the first of the next;
* the track-level attributes are the first piece's (the UI keeps the first piece's immutable
  attributes), ``group`` 0 as in the UI, and ``source`` is what the pieces share, else
  ``semi-auto`` (``auto`` only when every piece was).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from autotrack.errors import InputError
from autotrack.tracks import Track

LINEAR_TYPES = frozenset({"rectangle", "ellipse", "cuboid"})
JOINABLE_TYPES = frozenset({"rectangle", "polygon", "polyline", "points", "ellipse", "cuboid"})


class MergeConflict(InputError):
    """Pieces that cannot become one track as they are (the message names the frames)."""


def frame_of(shape: Mapping[str, Any]) -> int:
    return int(shape["frame"])


def ordered_shapes(track: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The track's keyframes by frame (copies of the dicts, not of their values)."""
    return sorted((dict(s) for s in track.get("shapes") or []), key=frame_of)


def shape_at(track: Mapping[str, Any], frame: int) -> dict[str, Any] | None:
    """The shape CVAT shows for ``track`` on ``frame`` (a copy, no id), None where hidden."""
    shapes = ordered_shapes(track)
    before = [s for s in shapes if frame_of(s) <= frame]
    if not before or before[-1].get("outside"):
        return None
    previous = before[-1]
    shown = {k: copy.deepcopy(v) for k, v in previous.items() if k != "id"}
    shown["frame"] = frame
    after = [s for s in shapes if frame_of(s) > frame]
    if frame_of(previous) == frame or not after:
        return shown
    following = after[0]
    p0, p1 = list(previous.get("points") or []), list(following.get("points") or [])
    linear = previous["type"] in LINEAR_TYPES or (previous["type"] in ("polygon", "polyline")
                                                   and len(p0) == len(p1))
    if linear and previous["type"] == following["type"]:
        t = (frame - frame_of(previous)) / (frame_of(following) - frame_of(previous))
        shown["points"] = [float(a + (b - a) * t) for a, b in zip(p0, p1)]
        r0 = float(previous.get("rotation") or 0.0)
        step = ((float(following.get("rotation") or 0.0) - r0 + 180) % 360) - 180
        shown["rotation"] = (r0 + step * t + 360) % 360
    return shown


def track_visible_in(track: Mapping[str, Any], start: int, stop: int) -> bool:
    """``_is_track_inside``: shown on some frame of [start, stop] (a visible last keyframe
    holds to the end of the task)."""
    shapes = ordered_shapes(track)
    for shape, following in zip(shapes, [*shapes[1:], None]):
        if shape.get("outside"):
            continue
        end = frame_of(following) - 1 if following is not None else stop
        if frame_of(shape) <= stop and end >= start:
            return True
    return False


def shown_runs(track: Mapping[str, Any]) -> list[tuple[int, int]]:
    """The runs of frames [first, last] on which the track is shown; a run that no outside
    keyframe ends stops at its last keyframe (where a person stopped drawing it)."""
    runs: list[tuple[int, int]] = []
    start = None
    last_visible = None
    for shape in ordered_shapes(track):
        if shape.get("outside"):
            if start is not None:
                runs.append((start, frame_of(shape) - 1))
                start = None
        else:
            start = frame_of(shape) if start is None else start
            last_visible = frame_of(shape)
    if start is not None and last_visible is not None:
        runs.append((start, last_visible))
    return runs


def shown_span(track: Mapping[str, Any]) -> tuple[int, int] | None:
    """(first, last) frame on which the track is shown, None for a track never shown."""
    runs = shown_runs(track)
    return (runs[0][0], runs[-1][1]) if runs else None


def track_boxes(track: Mapping[str, Any], track_id: int, class_id: int) -> Track:
    """The track as a :class:`~autotrack.tracks.Track`: its box on every frame it is shown
    (the bounding box of its points there), score 1."""
    frames: list[int] = []
    boxes: list[list[float]] = []
    for first, last in shown_runs(track):
        for frame in range(first, last + 1):
            shape = shape_at(track, frame)
            if shape is None:
                continue
            points = np.asarray(shape.get("points") or [], dtype=np.float64).reshape(-1, 2)
            if not len(points):
                continue
            frames.append(frame)
            boxes.append([*points.min(axis=0), *points.max(axis=0)])
    return Track(track_id=track_id, class_id=class_id,
                 frames=np.asarray(frames, dtype=np.int64),
                 boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
                 scores=np.ones(len(frames)))


# --- joining ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class JoinReport:
    """What :func:`join_tracks` did beyond copying keyframes (for the person who asked)."""

    trimmed: tuple[str, ...] = ()  # "track 12 loses frames 40-44 (it overlaps track 15)"
    gaps: tuple[tuple[int, int], ...] = ()  # hidden (or bridged) spans between pieces


def _shape_type(track: Mapping[str, Any], name: str) -> str:
    types = {s.get("type") for s in track.get("shapes") or []}
    if len(types) != 1:
        raise MergeConflict(f"{name} has shapes of types {sorted(map(str, types))}: "
                            "cannot merge it")
    kind = str(types.pop())
    if kind == "mask":
        raise MergeConflict(f"{name} is a mask track: CVAT cannot merge masks (nor can this "
                            "tool); merge its polygons or boxes instead")
    if kind not in JOINABLE_TYPES or track.get("elements"):
        raise MergeConflict(f"{name} is a {kind} track: only boxes, polygons, polylines, "
                            "points, ellipses and cuboids are merged")
    return kind


def _name(track: Mapping[str, Any]) -> str:
    return f"track {track['id']}" if track.get("id") is not None else "a track"


def _check_pieces(tracks: Sequence[Mapping[str, Any]]) -> None:
    if len(tracks) < 2:
        raise MergeConflict("give at least two tracks to merge")
    ids = [t.get("id") for t in tracks if t.get("id") is not None]
    if len(set(ids)) != len(ids):
        raise MergeConflict(f"track {next(i for i in ids if ids.count(i) > 1)} is given twice")
    labels = {t.get("label_id") for t in tracks}
    if len(labels) != 1:
        described = ", ".join(f"{_name(t)} has label {t.get('label_id')}" for t in tracks)
        raise MergeConflict(f"the tracks have different labels ({described}): a merged track "
                            "has one label")
    kinds = {_name(t): _shape_type(t, _name(t)) for t in tracks}
    if len(set(kinds.values())) != 1:
        described = ", ".join(f"{name} is a {kind}" for name, kind in kinds.items())
        raise MergeConflict(f"the tracks have different shape types ({described})")
    for track in tracks:
        if shown_span(track) is None:
            raise MergeConflict(f"{_name(track)} is never shown (every keyframe is outside)")


def _frames(first: int, last: int) -> str:
    return f"frame {first}" if first == last else f"frames {first}-{last}"


def _cut_end(track: dict[str, Any], last: int) -> None:
    """Keep ``track`` up to frame ``last`` (a keyframe there if it moved on past it)."""
    shapes = ordered_shapes(track)
    kept = [s for s in shapes if frame_of(s) <= last]
    shown = shape_at(track, last)
    if shown is not None and (not kept or frame_of(kept[-1]) < last) and \
            any(frame_of(s) > last for s in shapes):
        kept.append(shown)
    track["shapes"] = kept


def _cut_start(track: dict[str, Any], first: int) -> None:
    """Keep ``track`` from frame ``first`` on (a keyframe there if it was shown there)."""
    shapes = ordered_shapes(track)
    kept = [s for s in shapes if frame_of(s) >= first]
    shown = shape_at(track, first)
    if shown is not None and (not kept or frame_of(kept[0]) > first):
        kept.insert(0, shown)
    track["shapes"] = kept


def _resolve_overlaps(pieces: list[dict[str, Any]], trim: bool) -> list[str]:
    """Refuse (or, with ``trim``, cut) pieces whose shown spans overlap. ``pieces`` are edited
    in place and left in order of their first shown frame; every cut removes frames, so the
    scan ends."""
    notes: list[str] = []
    while True:
        pieces.sort(key=lambda t: shown_span(t)[0])  # type: ignore[index]
        for earlier, later in zip(pieces, pieces[1:]):
            first_a, last_a = shown_span(earlier)  # type: ignore[misc]
            first_b, last_b = shown_span(later)  # type: ignore[misc]
            if first_b <= last_a:
                break
        else:
            return notes
        both = _frames(first_b, min(last_a, last_b))
        if not trim:
            raise MergeConflict(
                f"{_name(earlier)} and {_name(later)} are both shown on {both}: one object "
                "cannot be in two places; fix one of them, or pass --trim to cut the shorter "
                "one there")
        shorter, longer = (earlier, later) if last_a - first_a <= last_b - first_b \
            else (later, earlier)
        if shorter is earlier:
            _cut_end(earlier, first_b - 1)
        else:
            _cut_start(later, last_a + 1)
        if shown_span(shorter) is None:
            raise MergeConflict(f"{_name(shorter)} lies inside {_name(longer)}'s frames: "
                                "nothing of it would be left; leave it out of the merge")
        notes.append(f"{_name(shorter)} loses {both} (shown there by {_name(longer)})")


def _source(tracks: Sequence[Mapping[str, Any]]) -> str:
    sources = {str(t.get("source") or "manual") for t in tracks}
    return sources.pop() if len(sources) == 1 else "semi-auto"


def join_tracks(tracks: Sequence[Mapping[str, Any]], *, bridge: bool = False,
                trim: bool = False) -> tuple[dict[str, Any], JoinReport]:
    """One CVAT track (no ids) made of ``tracks`` (task-level JSON, in any order), and what
    was trimmed or bridged; :class:`MergeConflict` for pieces that cannot be joined."""
    _check_pieces(tracks)
    pieces = [copy.deepcopy(dict(t)) for t in tracks]
    for piece in pieces:
        piece["shapes"] = [{k: v for k, v in s.items() if k != "id"}
                           for s in ordered_shapes(piece)]
    notes = _resolve_overlaps(pieces, trim)
    keyframes: dict[int, dict[str, Any]] = {}
    gaps: list[tuple[int, int]] = []
    for k, piece in enumerate(pieces):
        shapes = ordered_shapes(piece)
        following = pieces[k + 1] if k + 1 < len(pieces) else None
        if following is not None:
            _, last = shown_span(piece)  # type: ignore[misc]
            next_first, _ = shown_span(following)  # type: ignore[misc]
            shapes = [s for s in shapes if frame_of(s) <= last]  # its closing outside: below
            if next_first > last + 1:
                gaps.append((last + 1, next_first - 1))
                if not bridge:
                    closing = dict(shape_at(piece, last) or shapes[-1], frame=last + 1)
                    shapes.append(dict(closing, outside=True))
        for shape in shapes:
            frame = frame_of(shape)
            held = keyframes.get(frame)
            if held is not None and not held.get("outside") and not shape.get("outside"):
                raise MergeConflict(f"two pieces have a visible shape on frame {frame}")
            if held is None or held.get("outside"):
                keyframes[frame] = shape
    ordered = [keyframes[f] for f in sorted(keyframes)]
    while ordered and ordered[0].get("outside"):
        ordered.pop(0)
    first = pieces[0]
    merged = {
        "label_id": first["label_id"],
        "frame": frame_of(ordered[0]),
        "group": 0,
        "source": _source(tracks),
        "attributes": copy.deepcopy(first.get("attributes") or []),
        "shapes": ordered,
        "elements": [],
    }
    return merged, JoinReport(trimmed=tuple(notes), gaps=tuple(gaps))


__all__ = ["JoinReport", "MergeConflict", "frame_of", "join_tracks", "ordered_shapes",
           "shape_at", "shown_runs", "shown_span", "track_boxes", "track_visible_in"]
