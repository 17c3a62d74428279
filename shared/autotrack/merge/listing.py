"""Merge proposals on CVAT tracks, as both merge doors list them.

The task door (``autotrack task merge``) and the offline door (``autotrack merge`` on CVAT
for video XML) read tracks into the same JSON form (:mod:`autotrack.merge.cvat_tracks`),
propose with :func:`autotrack.merge.propose_merges` and number the proposals here, so that a
number printed, saved or shown on the review page (:mod:`autotrack.merge.review`) means the
same pair of tracks in either door. ``--accept N,N`` chooses by those numbers;
``--min-confidence`` by confidence; :func:`chains` turns the chosen pairs into the groups of
track ids to join.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from autotrack.errors import InputError
from autotrack.merge.appearance import DEFAULT_APPEARANCE_LABELS, DEFAULT_REID, \
    appearance_labels
from autotrack.tracks import Track

NOT_JOINABLE = frozenset({"mask", "skeleton", "cuboid"})


@dataclass(frozen=True)
class Listing:
    """Numbered proposals, best first, and the boxes each proposed track was scored on."""

    rows: list[dict[str, Any]]  # number, before, after, label, gap, confidence, reason
    pieces: dict[int, Track] = field(default_factory=dict)


def add_choice_arguments(parser: argparse.ArgumentParser, *, accept: str) -> None:
    """The options both merge doors share: which proposals, and how pieces are joined."""
    from autotrack.merge.proposals import DEFAULT_MIN_CONFIDENCE

    parser.add_argument("--min-confidence", type=float, default=DEFAULT_MIN_CONFIDENCE,
                        metavar="C", help=f"with --apply: the lowest confidence merged "
                                          f"(default {DEFAULT_MIN_CONFIDENCE})")
    parser.add_argument("--accept", metavar="N,N,...", help=accept)
    parser.add_argument("--bridge", action="store_true",
                        help="interpolate through the gap between two pieces (default: the "
                             "object stays hidden there, as CVAT's merge leaves it)")
    parser.add_argument("--trim", action="store_true",
                        help="where two pieces are shown on the same frames, cut the shorter "
                             "one there (default: refuse, naming the frames)")
    parser.add_argument("--reid", default=DEFAULT_REID, metavar="MODEL",
                        help="appearance for the proposals: the Re-ID model whose embeddings "
                             "of the crops at each piece's ends are compared, for the labels "
                             f"of --reid-labels (default {DEFAULT_REID}; person-reid-0287, a "
                             "Re-ID .onnx or a torchreid checkpoint; 'none': motion only)")
    parser.add_argument("--reid-labels", metavar="LABEL,...",
                        help="the labels scored on appearance too (default: "
                             f"{','.join(DEFAULT_APPEARANCE_LABELS)}; the Re-ID models are "
                             "trained on pedestrians)")


def reid_settings(args: argparse.Namespace) -> list[str]:
    """The appearance options as given (for a printed command that proposes the same)."""
    words = [] if args.reid == DEFAULT_REID else ["--reid", str(args.reid)]
    return words + (["--reid-labels", args.reid_labels] if args.reid_labels else [])


def uses_appearance(args: argparse.Namespace) -> bool:
    return str(args.reid).lower() not in ("none", "off", "") and \
        bool(appearance_labels(args.reid_labels))


Embed = Callable[[Sequence[Track], Mapping[int, str], Any], Mapping[int, Any]]


def joinable(track: Mapping[str, Any]) -> bool:
    """One kind of shape, and one whose keyframes can be proposed and joined."""
    types = {s.get("type") for s in track.get("shapes") or []}
    return len(types) == 1 and types.pop() not in NOT_JOINABLE


def list_proposals(tracks: Mapping[int, Mapping[str, Any]], labels: Mapping[int, str], *,
                   fps: float | None = None, embed: Embed | None = None) -> Listing:
    """Proposals over ``tracks`` (track id -> CVAT track JSON), numbered from 1 best first.
    ``fps`` scales the proposal settings (made for 25 frames/s); None keeps them. ``embed``
    (pieces, labels, config) gives the appearance embeddings of the pieces it chooses
    (:mod:`autotrack.merge.appearance`); None: motion only."""
    from autotrack.merge.cvat_tracks import track_boxes
    from autotrack.merge.proposals import ProposalConfig, propose_merges

    config = ProposalConfig() if fps is None else ProposalConfig().at_frame_rate(fps)
    boxes = [track_boxes(t, i, int(t["label_id"])) for i, t in sorted(tracks.items())
             if joinable(t)]
    boxes = [b for b in boxes if len(b.frames)]
    appearance = embed(boxes, labels, config) if embed is not None else None
    proposals = propose_merges(boxes, appearance=appearance, config=config)
    rows = [{"number": n, "before": p.before, "after": p.after,
             "label": labels.get(p.class_id, str(p.class_id)), "gap": p.gap,
             "confidence": round(float(p.confidence), 3), "reason": p.reason}
            for n, p in enumerate(proposals, 1)]
    used = {i for p in proposals for i in (p.before, p.after)}
    return Listing(rows, {b.track_id: b for b in boxes if b.track_id in used})


def print_proposals(rows: Sequence[Mapping[str, Any]], out: TextIO) -> None:
    if not rows:
        print("no merge proposals: no track seems to continue another", file=out)
        return
    print(f"{len(rows)} merge proposals, best first:", file=out)
    print(f"{'#':>3}  {'tracks':>13}  {'label':<12} {'gap':>5}  {'conf':>5}  reason", file=out)
    for p in rows:
        pair = f"{p['before']} -> {p['after']}"
        print(f"{p['number']:>3}  {pair:>13}  {str(p['label'])[:12]:<12} {p['gap']:>5}  "
              f"{p['confidence']:>5.2f}  {p['reason']}", file=out)


def parse_ids(text: str, what: str) -> list[int]:
    """``12,15,19`` as numbers; one clear line for anything else."""
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"{what} takes comma-separated numbers, got {text!r}") from None
    if not ids:
        raise InputError(f"{what} names nothing")
    return ids


def chosen(rows: Sequence[Mapping[str, Any]], accept: str | None,
           min_confidence: float) -> list[Mapping[str, Any]]:
    """The rows ``--accept N,N`` names (every number must exist), else those at or above
    ``min_confidence``."""
    if not accept:
        return [p for p in rows if p["confidence"] >= min_confidence]
    numbers = set(parse_ids(accept, "--accept"))
    unknown = sorted(numbers - {p["number"] for p in rows})
    if unknown:
        raise InputError(f"no proposal numbered {', '.join(map(str, unknown))} "
                         f"(there are {len(rows)})")
    return [p for p in rows if p["number"] in numbers]


def chains(pairs: Sequence[tuple[int, int]]) -> list[list[int]]:
    """Accepted (before, after) links as chains of track ids in time order; a piece in two
    links of one side (two successors) is refused."""
    successor: dict[int, int] = {}
    predecessor: dict[int, int] = {}
    for before, after in pairs:
        for table, key, value, side in ((successor, before, after, "followed"),
                                        (predecessor, after, before, "preceded")):
            if table.get(key, value) != value:
                raise InputError(f"track {key} would be {side} by both track {table[key]} and "
                                 f"track {value}; accept one of the two proposals")
            table[key] = value
    out = []
    for start in sorted(set(successor) - set(predecessor)):
        chain = [start]
        while chain[-1] in successor:
            chain.append(successor[chain[-1]])
        out.append(chain)
    return out


__all__ = ["Listing", "add_choice_arguments", "chains", "chosen", "joinable", "list_proposals",
           "parse_ids", "print_proposals", "reid_settings", "uses_appearance"]
