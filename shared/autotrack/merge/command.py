"""``autotrack merge``: merge proposals and merges on a CVAT for video 1.1 XML file, offline.

The same proposals (:mod:`autotrack.merge.listing`) and the same join
(:func:`autotrack.merge.cvat_tracks.join_tracks`) as ``autotrack task merge``, on a file
CVAT exported (or ``autotrack annotate`` wrote), written to a new file with every other
element as it was (:mod:`autotrack.cvat_xml`):

* ``autotrack merge IN.xml [--video V]`` prints the proposals, numbered, best first, and writes
  the review page (:mod:`autotrack.merge.review`; thumbnails from ``--video``);
* ``--apply`` merges those at or above ``--min-confidence``, ``--accept N,N`` exactly those
  (the numbers as printed; give the same ``--video``, whose frame rate scales the proposal
  settings), ``--join ID,ID`` the tracks named, into ``-o OUT.xml``;
* with ``--video``, pieces of a person (``--reid-labels``) are compared on appearance too:
  Re-ID embeddings (``--reid``, default person-reid-0248; ``none`` turns it off) of the crops
  of their first and last boxes (:mod:`autotrack.merge.appearance`).

Bad input is one line (``autotrack: error: ...``) and nothing is written.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from autotrack.errors import InputError


def add_merge_parser(commands: Any) -> argparse.ArgumentParser:
    """``autotrack merge`` on the top-level subparsers ``commands``."""
    from autotrack.merge.listing import add_choice_arguments
    from autotrack.tracking_options import bounded_float

    parser = commands.add_parser(
        "merge", help="merge tracks a tracker broke one object into, in a CVAT XML file",
        description="Propose merges of the tracks of a CVAT for video 1.1 XML file (printed, "
                    "best first, and shown on a review page), or merge the chosen ones into a "
                    "new file with every other element kept.")
    parser.add_argument("input", metavar="IN.xml", help="CVAT for video 1.1 XML")
    parser.add_argument("-o", "--output", metavar="OUT.xml",
                        help="where the merged XML goes (needed by --apply, --accept, --join)")
    parser.add_argument("--video", metavar="V",
                        help="the video (or frame folder) the XML annotates: thumbnails on the "
                             "review page, and its frame rate for the proposals")
    parser.add_argument("--fps", type=bounded_float(0.0, 1000.0), metavar="F",
                        help="the video's frame rate, which scales the proposal settings "
                             "(default: --video's; without it, the 25 the settings are made "
                             "for)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--apply", action="store_true",
                      help="merge the proposals at or above --min-confidence (or --accept)")
    what.add_argument("--join", metavar="ID,ID,...",
                      help="merge these tracks (their ids in the XML) into one")
    add_choice_arguments(parser, accept="merge exactly these proposals (their numbers, as "
                                        "printed and on the review page; implies --apply)")
    parser.add_argument("--review", metavar="PAGE.html",
                        help="the review page (default: IN-merge-review.html beside IN.xml)")
    return parser


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (b.exists() and a.samefile(b))
    except OSError:
        return False


def _source(args: argparse.Namespace, doc: Any) -> Any:
    """The ``--video`` frame source, checked against the XML's frame size."""
    if not args.video:
        return None
    from autotrack.video import FrameSource

    source = FrameSource(args.video)
    info = source.info
    if doc.width and doc.height and (info.width, info.height) != (doc.width, doc.height):
        raise InputError(f"{args.video} is {info.width}x{info.height}, but {doc.path.name} "
                         f"annotates {doc.width}x{doc.height} frames: not its video")
    return source


def _joined(doc: Any, ids: Sequence[int], args: argparse.Namespace
            ) -> tuple[list[int], dict[str, Any], Any]:
    from autotrack.merge.cvat_tracks import join_tracks, shown_span
    from autotrack.cvat_xml import READ_TYPES

    missing = [i for i in ids if i not in doc.tracks]
    if missing:
        known = ", ".join(map(str, sorted(doc.tracks)[:20])) or "none"
        raise InputError(f"track {', '.join(map(str, missing))} is not a track of "
                         f"{doc.path.name} (its tracks: {known}"
                         f"{', ...' if len(doc.tracks) > 20 else ''})")
    for i in ids:
        kinds = {s["type"] for s in doc.tracks[i]["shapes"]} - READ_TYPES
        if kinds:
            raise InputError(f"track {i} is a {kinds.pop()} track: this tool merges boxes, "
                             "polygons, polylines, points and ellipses")
    merged, report = join_tracks([doc.tracks[i] for i in ids], bridge=args.bridge,
                                 trim=args.trim)
    ordered = sorted(ids, key=lambda i: shown_span(doc.tracks[i]) or (0, 0))
    merged["id"] = ordered[0]
    return ordered, merged, report


def _print_merge(ordered: Sequence[int], report: Any, bridge: bool, out: TextIO) -> None:
    gaps = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in report.gaps)
    how = f"; frames {gaps} {'bridged' if bridge else 'hidden'}" if gaps else ""
    print(f"merge {' + '.join(map(str, ordered))} -> track {ordered[0]}{how}", file=out)
    for note in report.trimmed:
        print(f"  trimmed: {note}", file=out)


def _review(doc: Any, args: argparse.Namespace, listing: Any, source: Any,
            output: Path) -> tuple[Path, str]:
    from autotrack.files import write_atomically
    from autotrack.merge.review import forward_frames, needed_frames, review_page

    path = Path(args.review) if args.review else \
        doc.path.with_name(f"{doc.path.stem}-merge-review.html")
    words = ["autotrack", "merge", str(doc.path), "-o", str(output), *_same_settings(args)]
    notes, frame, how = [], None, f"thumbnails from {args.video}"
    if source is None:
        notes.append("No thumbnails: the command was run without --video. Run it again with "
                     "--video V (the video this XML annotates) to see the boxes.")
        how = "no thumbnails: give --video V"
    else:
        frame = forward_frames(source.frames_at(needed_frames(listing.rows, listing.pieces)))
    page = review_page(listing.rows, listing.pieces, frame, title=doc.path.name,
                       command=shlex.join(words), min_confidence=args.min_confidence,
                       fps=_fps(args, source), notes=notes, rest="all of them are in the printed list")
    return write_atomically(path, page.encode("utf-8")), how


def _embed(args: argparse.Namespace, source: Any) -> Any:
    """Appearance from ``--video``'s frames for the labels of ``--reid-labels``, or None."""
    from autotrack.merge.appearance import PieceEmbedder, appearance_labels
    from autotrack.merge.listing import uses_appearance

    if source is None or not uses_appearance(args):
        return None
    return PieceEmbedder(str(args.reid), appearance_labels(args.reid_labels), source.frames_at)


def _fps(args: argparse.Namespace, source: Any) -> float | None:
    return args.fps or (source.info.fps if source is not None else None)


def _same_settings(args: argparse.Namespace) -> list[str]:
    """The options that make ``--accept``'s numbers mean the same proposals again."""
    from autotrack.merge.listing import reid_settings

    words = ["--video", str(args.video)] if args.video else []
    words += ["--fps", f"{args.fps:g}"] if args.fps else []
    return words + (reid_settings(args) if args.video else [])


def run_merge_file(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``autotrack merge``: see the module docstring."""
    from autotrack.files import write_atomically
    from autotrack.cvat_xml import merged_xml, read_cvat_xml
    from autotrack.merge.listing import (
        chains,
        chosen,
        list_proposals,
        parse_ids,
        print_proposals,
    )

    writes = bool(args.apply or args.join or args.accept)
    if args.join and args.accept:
        raise InputError("--join names the tracks to merge; --accept chooses proposals: give one")
    if writes and args.review:
        raise InputError("--review names the page of proposals, written without --apply, "
                         "--accept or --join; leave it out")
    if writes and not args.output:
        raise InputError("give -o OUT.xml: where the merged XML goes (IN.xml is left as it is)")
    source_path = Path(args.input)
    if args.output and _same_file(Path(args.output), source_path):
        raise InputError("-o names IN.xml itself: write the merge to another file (the input "
                         "stays as it was)")
    doc = read_cvat_xml(source_path)
    source = _source(args, doc)
    if args.join:
        groups = [parse_ids(args.join, "--join")]
    else:
        embed = _embed(args, source)
        listing = list_proposals(doc.tracks, doc.labels, fps=_fps(args, source), embed=embed)
        if not writes:
            print_proposals(listing.rows, out)
            if embed is not None:
                print(embed.summary(), file=out)
            output = Path(args.output) if args.output else \
                source_path.with_name(f"{source_path.stem}-merged.xml")
            page, how = _review(doc, args, listing, source, output)
            print(f"review page: {page} ({how})", file=out)
            if listing.rows:
                words = ["autotrack", "merge", str(source_path), "-o", str(output),
                         *_same_settings(args)]
                print(f"merge them with: {shlex.join(words)} --accept N,N (or --apply: those "
                      f"at or above {args.min_confidence})", file=out)
            return 0
        groups = chains([(p["before"], p["after"])
                         for p in chosen(listing.rows, args.accept, args.min_confidence)])
    merges = [_joined(doc, ids, args) for ids in groups]
    data = merged_xml(doc, [(ids, merged) for ids, merged, _ in merges])
    for ordered, _, report in merges:
        _print_merge(ordered, report, args.bridge, out)
    path = write_atomically(args.output, data)
    pieces = sum(len(ids) for ids, _, _ in merges)
    if merges:
        print(f"wrote {path}: {pieces} tracks merged into {len(merges)}; "
              f"{len(doc.tracks) - pieces + len(merges)} tracks in all, every other element "
              f"as in {source_path.name}", file=out)
    else:
        print(f"nothing to merge; wrote {path} as {source_path.name} is", file=out)
    return 0


__all__ = ["add_merge_parser", "run_merge_file"]
