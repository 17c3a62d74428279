"""Appearance for merge proposals: Re-ID embeddings of the crops at each piece's ends.

Both merge doors read frames in increasing order (a task's chunks through
:class:`autotrack.cvat.task.frames.TaskFrames`, which downloads only the chunks that hold a
frame asked for; a video through :meth:`autotrack.video.FrameSource.frames_at`). So the
frames are chosen first (:func:`appearance_frames`: the first and last ``ends`` boxes of
every piece that could be proposed, of the labels where appearance helps), then read once,
in order, and every box of a frame is embedded in one batch (:func:`piece_embeddings`).

Appearance is used for people by default (``DEFAULT_APPEARANCE_LABELS``): the Re-ID models
(person-reid-0248) are trained on pedestrians; for other labels an embedding of a person
model says little, so they are scored on motion alone (docs/merge.md, Benchmark).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import replace

import numpy as np

from autotrack.tracks import Track

DEFAULT_REID = "person-reid-0248"  # autotrack.reid.DEFAULT_REID (not imported: onnxruntime)
APPEARANCE_ENDS = 5  # boxes at each end of a piece whose crops are embedded and averaged
DEFAULT_APPEARANCE_LABELS = ("person",)

FrameReader = Callable[[int], "np.ndarray | None"]  # frame index -> BGR image or None


def appearance_labels(text: str | None) -> tuple[str, ...]:
    """``person,pedestrian`` as label names (compared case-insensitively); None: the
    default."""
    if text is None:
        return DEFAULT_APPEARANCE_LABELS
    return tuple(part.strip().lower() for part in text.split(",") if part.strip())


def pieces_with_appearance(tracks: Sequence[Track], labels: Mapping[int, str],
                           wanted: Collection[str], config=None) -> list[Track]:
    """The pieces worth embedding: of a label in ``wanted`` (case-insensitive), and in at
    least one candidate pair (whatever its score, since appearance can raise it)."""
    from autotrack.merge.proposals import ProposalConfig, candidate_track_ids

    names = {name.lower() for name in wanted}
    chosen = [t for t in tracks if str(labels.get(t.class_id, "")).lower() in names]
    if not chosen:
        return []
    config = replace(config or ProposalConfig(), min_score=1e-9)
    ids = candidate_track_ids(chosen, config)
    return [t for t in chosen if t.track_id in ids]


def _ends(track: Track, ends: int) -> list[int]:
    n = len(track.frames)
    return np.unique(np.r_[np.arange(min(ends, n)), np.arange(max(0, n - ends), n)]).tolist()


def appearance_frames(pieces: Sequence[Track], ends: int = APPEARANCE_ENDS) -> list[int]:
    """The frames :func:`piece_embeddings` reads, in increasing order."""
    return sorted({int(t.frames[k]) for t in pieces for k in _ends(t, ends)})


def piece_embeddings(pieces: Sequence[Track], frame: FrameReader, embedder,
                     ends: int = APPEARANCE_ENDS) -> dict[int, np.ndarray]:
    """Per piece id, the (N, D) embeddings of its first and last ``ends`` boxes' crops
    (frames that cannot be read, and boxes with no pixels in the frame, are left out; a piece
    with none is left out). ``frame`` is asked for frames in increasing order."""
    by_frame: dict[int, list[tuple[int, np.ndarray]]] = {}
    for track in pieces:
        for k in _ends(track, ends):
            by_frame.setdefault(int(track.frames[k]), []).append(
                (track.track_id, np.asarray(track.boxes[k], dtype=np.float64)))
    rows: dict[int, list[np.ndarray]] = {}
    for index in sorted(by_frame):
        image = frame(index)
        if image is None:
            continue
        boxes = np.array([box for _, box in by_frame[index]])
        for (track_id, _), row in zip(by_frame[index], embedder.embed(image, boxes)):
            if np.any(row):
                rows.setdefault(track_id, []).append(row)
    return {track_id: np.asarray(r) for track_id, r in rows.items()}


class PieceEmbedder:
    """The ``embed`` that :func:`autotrack.merge.listing.list_proposals` takes, for a door:
    the pieces of the ``labels`` it should, their end frames read through ``frames_at``
    (increasing frame numbers -> ``(index, BGR frame)`` pairs in that order), embedded by the
    Re-ID ``model`` (loaded only when a piece needs it). ``embedded`` counts the pieces that
    got an embedding; ``frames`` the frames asked for."""

    def __init__(self, model: str, labels: Collection[str],
                 frames_at: Callable[[list[int]], Iterable[tuple[int, np.ndarray]]],
                 ends: int = APPEARANCE_ENDS) -> None:
        self.model = model
        self.labels = tuple(labels)
        self.frames_at = frames_at
        self.ends = ends
        self.embedded = 0
        self.frames = 0

    def __call__(self, pieces: Sequence[Track], labels: Mapping[int, str], config
                 ) -> dict[int, np.ndarray]:
        from autotrack.merge.review import forward_frames
        from autotrack.reid import load_embedder

        chosen = pieces_with_appearance(pieces, labels, self.labels, config)
        if not chosen:
            return {}
        embedder = load_embedder(self.model)
        frames = appearance_frames(chosen, self.ends)
        self.frames = len(frames)
        stream = iter(self.frames_at(frames))
        try:
            out = piece_embeddings(chosen, forward_frames(stream), embedder, self.ends)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        self.embedded = len(out)
        return out

    def summary(self) -> str:
        names = ", ".join(self.labels)
        if not self.embedded:
            return f"appearance: no {names} piece to compare ({self.model})"
        return (f"appearance: {self.model} embeddings of {self.embedded} {names} pieces' "
                f"first and last {self.ends} boxes ({self.frames} frames read)")


__all__ = ["PieceEmbedder", "APPEARANCE_ENDS", "DEFAULT_APPEARANCE_LABELS", "appearance_frames",
           "appearance_labels", "piece_embeddings", "pieces_with_appearance"]
