"""Merge proposals (autotrack.merge) against ground truth: are the proposed joins right, how
many of the needed joins they find, and what applying them does to IDF1 and HOTA, next to
``refine_tracks`` alone.

Run: python tools/bench/merge.py [--quick] [--seeds S] [--calibrate] [--held-out] [--rendered S]
     [--pixels] [--dump NPZ]

Inputs, TUD-Campus and TUD-Stadtmitte (MOT15, 25 fps), scored against their ground truth:

* ``made pieces``: the ground truth broken the way trackers break tracks, per seed: at
  crossings (two people's boxes overlapping, IoU >= 0.3) the two identities are swapped
  from that frame on with probability 0.5 and both lose 4-15 frames there; every track is
  then cut into pieces of 10-80 frames with 3-40 frames dropped between them (occlusions),
  one cut in five as a 1-3 frame overlap instead (the new ID starts before the old one
  ends), one piece in ten followed by a 1-2 frame stray piece; boxes jittered by 2% of
  their size per corner;
* ``ByteTrack``: our ByteTrack (``autotrack annotate``'s defaults, collected tracks) on
  detector-like detections of the ground truth (``common.detector_like``) with 15% and 30%
  of boxes missed, per seed;
* ``test.txt``: the real tracker output shipped with each sequence (one run).

``--held-out`` adds MOT17-02/04/09 (30 fps): ByteTrack on the public FRCNN detections
(``det.txt``), settings scaled with ``at_frame_rate(30)``, and the same at 15 fps (every
second frame); nothing was tuned on them. ``--rendered S`` adds ByteTrack on the rendered
TUD scenes of ``crossing_scenes.py`` (YOLOX-Nano on pixels, seeds 0..S-1) with appearance:
each piece's person-reid-0248 embeddings of the detections under its first and last 5 boxes.
``--pixels`` adds the three TUD inputs again with appearance, as the merge doors compute it:
person-reid-0248 embeddings of the crops of each piece's first and last 5 boxes, cut from the
rendered TUD scene of seed s (``crossing_scenes.render``; TUD itself has no pixels here).
``--calibrate`` fits the motion calibration (TUD inputs without appearance) and the appearance
calibration (the ``+ pixels`` inputs of the first half of the seeds, on the pieces and after
refine) and checks the latter on the second half and the rendered scenes.

A piece's identity is the ground-truth id its boxes match (IoU >= 0.5, one-to-one per frame)
on more than half of its frames; a proposal is right when both pieces have the same
identity. The joins needed are, per identity, its pieces minus one. IDF1/HOTA rows: the
pieces as they are; ``refine`` (``refine_tracks``, default RefineConfig: links and gap
filling); ``proposals`` (proposals at or above the default confidence joined, then gaps
filled as refine fills them, ``RefineConfig(link=False)``, so that only the joins differ);
``refine + proposals`` (proposals on refine's output, joined, filled).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import linear_sum_assignment, minimize

from common import DetectorNoise, Truth, detector_like, every_nth_frame, header, \
    markdown_table, mot_truth, per_frame, public_detections, shared_data, tracking_metrics, \
    tracks_of

from autotrack.export.mot import read_mot
from autotrack.geometry import iou_matrix
from autotrack.merge import DEFAULT_MIN_CONFIDENCE, ProposalConfig, apply_proposals, \
    propose_merges
from autotrack.refine import RefineConfig, refine_tracks
from autotrack.tracking_options import TrackingOptions
from autotrack.tracks import Track, TrackCollector

SEQUENCES = ("TUD-Campus", "TUD-Stadtmitte")
HELD_OUT = ("MOT17-02-FRCNN", "MOT17-04-FRCNN", "MOT17-09-FRCNN")
CONFIDENCES = (0.5, 0.7, 0.8, 0.9, 0.95)
MISS_RATES = (0.15, 0.3)
APPEARANCE_ENDS = 5  # boxes at each end of a piece whose Re-ID embeddings are averaged


@dataclass(frozen=True)
class Case:
    """One set of pieces to propose merges for, with the truth to score them by."""

    family: str  # "made pieces", "ByteTrack", "test.txt", "MOT17 ByteTrack"
    truth: Truth
    tracks: list[Track]
    fps: float = 25.0
    detections: list | None = None  # with embeddings: rendered scenes, for appearance
    embeddings: list[np.ndarray] | None = None
    pixels: tuple[str, int] | None = None  # (sequence, seed): crops from its rendered frames
    seed: int = 0

    def appearance(self, tracks: Sequence[Track], ends: int = APPEARANCE_ENDS
                   ) -> dict[int, np.ndarray] | None:
        """Per track, the embeddings of the detections its first and last ``ends`` boxes
        stand for (IoU >= 0.7), or of those boxes' crops of the rendered frames (``pixels``),
        or None without either."""
        if self.pixels is not None:
            return pixel_appearance(self.pixels, tracks, ends)
        if self.embeddings is None:
            return None
        out = {}
        for track in tracks:
            rows = []
            picks = np.unique(np.r_[np.arange(min(ends, len(track.frames))),
                                    np.arange(max(0, len(track.frames) - ends), len(track.frames))])
            for k in picks.tolist():
                f = int(track.frames[k])
                d = self.detections[f]
                if len(d):
                    overlap = iou_matrix(track.boxes[k][None], d.boxes)[0]
                    if overlap.max() >= 0.7:
                        rows.append(self.embeddings[f][int(overlap.argmax())])
            if rows:
                out[track.track_id] = np.asarray(rows)
        return out


# ----------------------------------------------------------------------------- inputs
_FRAMES: dict[tuple[str, int], list[np.ndarray]] = {}


def _rendered_frames(sequence: str, seed: int) -> list[np.ndarray]:
    """The rendered frames of one scene (crossing_scenes.render), the last scene kept."""
    if (sequence, seed) not in _FRAMES:
        from crossing_scenes import render

        _FRAMES.clear()
        _FRAMES[(sequence, seed)] = [frame for frame, _, _ in render(sequence, seed)]
    return _FRAMES[(sequence, seed)]


_EMBEDDED: dict[tuple, np.ndarray] = {}  # (sequence, seed, frame, box) -> embedding


def pixel_appearance(pixels: tuple[str, int], tracks: Sequence[Track], ends: int
                     ) -> dict[int, np.ndarray]:
    """Per track, person-reid-0248 embeddings of its first and last ``ends`` boxes cut from
    the rendered frames of the TUD scene (boxes scaled to the background, as rendered)."""
    from crossing_scenes import SCALE, _embedder

    from autotrack.reid import crop_batch

    frames = _rendered_frames(*pixels)
    embedder = _embedder()
    wanted: dict[int, list[tuple]] = {}
    todo: dict[tuple, np.ndarray] = {}
    for track in tracks:
        n = len(track.frames)
        picks = np.unique(np.r_[np.arange(min(ends, n)), np.arange(max(0, n - ends), n)])
        keys = []
        for k in picks.tolist():
            f = int(track.frames[k])
            if f >= len(frames):
                continue
            box = np.round(track.boxes[k] * SCALE, 1)
            key = pixels + (f, tuple(box.tolist()))
            keys.append(key)
            if key not in _EMBEDDED and key not in todo:
                todo[key] = box
        wanted[track.track_id] = keys
    crops, where = [], []
    for key, box in todo.items():
        crop, valid = crop_batch(frames[key[2]], box[None], embedder.input_hw)
        if valid[0]:
            crops.append(crop[0])
            where.append(key)
        else:
            _EMBEDDED[key] = np.zeros(embedder.dim, np.float32)
    if crops:
        for key, row in zip(where, embedder.embed_crops(np.stack(crops))):
            _EMBEDDED[key] = row
    out = {}
    for track_id, keys in wanted.items():
        rows = [_EMBEDDED[k] for k in keys if np.any(_EMBEDDED[k])]
        if rows:
            out[track_id] = np.asarray(rows)
    return out


def truth_tracks(truth: Truth) -> dict[int, Track]:
    return {t.track_id: t for t in tracks_of(list(zip(truth.ids, truth.boxes)))}


def _crossings(tracks: dict[int, Track]) -> list[tuple[int, int, int]]:
    """(frame, id p, id q): the first frame of each run where p's and q's boxes overlap."""
    out = []
    ids = sorted(tracks)
    for x, p in enumerate(ids):
        for q in ids[x + 1:]:
            common, ip, iq = np.intersect1d(tracks[p].frames, tracks[q].frames,
                                            return_indices=True)
            if not len(common):
                continue
            iou = np.array([iou_matrix(tracks[p].boxes[i][None], tracks[q].boxes[j][None])[0, 0]
                            for i, j in zip(ip, iq)])
            close = iou >= 0.3
            starts = np.flatnonzero(close & ~np.r_[False, close[:-1]])
            out += [(int(common[s]), p, q) for s in starts]
    return sorted(out)


def made_pieces(truth: Truth, seed: int) -> list[Track]:
    """The ground truth broken as a tracker breaks it (module docstring)."""
    rng = np.random.default_rng(seed)
    people = truth_tracks(truth)
    # per person: frame -> (label, box); labels swap at crossings
    label = {p: {int(f): p for f in t.frames} for p, t in people.items()}
    box = {p: {int(f): b for f, b in zip(t.frames, t.boxes)} for p, t in people.items()}
    dropped: set[tuple[int, int]] = set()  # (person, frame) lost at a crossing
    for frame, p, q in _crossings(people):
        if rng.random() < 0.5:
            for f in label[p]:
                if f >= frame and f in label[q]:
                    label[p][f], label[q][f] = label[q][f], label[p][f]
            for who in (p, q):
                lost = int(rng.integers(4, 16))
                start = frame - int(rng.integers(0, lost + 1))
                dropped.update((who, f) for f in range(start, start + lost))
    # the tracker's tracks: label l's boxes over time
    streams: dict[int, list[tuple[int, np.ndarray]]] = {}
    for p in people:
        for f, l in label[p].items():
            if (p, f) not in dropped:
                streams.setdefault(l, []).append((f, box[p][f]))
    pieces: list[Track] = []
    next_id = 1

    def emit(rows: list[tuple[int, np.ndarray]]) -> None:
        nonlocal next_id
        if not rows:
            return
        frames = np.array([f for f, _ in rows], dtype=np.int64)
        boxes = np.array([b for _, b in rows], dtype=np.float64)
        size = np.tile(boxes[:, 2:] - boxes[:, :2], 2)
        boxes = boxes + rng.normal(0, 0.02, boxes.shape) * size
        pieces.append(Track(next_id, 0, frames, boxes, np.ones(len(frames))))
        next_id += 1

    for l in sorted(streams):
        rows = sorted(streams[l], key=lambda r: r[0])
        # a frame dropped at a crossing splits the stream too
        breaks = [0] + [k for k in range(1, len(rows)) if rows[k][0] - rows[k - 1][0] > 1] \
            + [len(rows)]
        for lo, hi in zip(breaks, breaks[1:]):
            at = lo
            while at < hi:
                stop = min(hi, at + int(rng.integers(10, 81)))
                if hi - stop < 10:
                    stop = hi
                if stop < hi and rng.random() < 0.2:  # a small overlap instead of a gap
                    overlap = int(rng.integers(1, 4))
                    emit(rows[at:stop])
                    at = max(stop - overlap, at + 1)
                    continue
                emit(rows[at:stop])
                if stop < hi and rng.random() < 0.1:  # a stray piece of 1-2 frames
                    stray = int(rng.integers(1, 3))
                    emit(rows[stop + 1: stop + 1 + stray])
                    stop += 1 + stray
                at = stop + (int(rng.integers(3, 41)) if stop < hi else 0)
    return pieces


def collect_bytetrack(detections, fps: float) -> list[Track]:
    """Our ByteTrack on ``autotrack annotate``'s defaults, whole-video tracks collected."""
    tracker = TrackingOptions(tracker_name="bytetrack").tracker(fps)
    collector = TrackCollector()
    for frame, d in enumerate(detections):
        collector.add(frame, tracker.update(d))
    return collector.tracks()


def mot_tracks(path) -> list[Track]:
    return [Track(i, 0, m.frames, m.boxes, np.ones(len(m.frames)))
            for i, m in sorted(read_mot(path).items())]


def cases(seeds: int, quick: bool, held_out: bool, rendered: int = 0,
          pixels: bool = False) -> list[Case]:
    out = []
    for name in SEQUENCES[:1] if quick else SEQUENCES:
        truth = mot_truth(name)
        made = [Case("made pieces", truth, made_pieces(truth, s), seed=s) for s in range(seeds)]
        tracked = []
        for miss in MISS_RATES[:1] if quick else MISS_RATES:
            noise = DetectorNoise(miss_rate=miss)
            tracked += [Case("ByteTrack", truth,
                             collect_bytetrack(detector_like(truth, s, noise), 25.0), seed=s)
                        for s in range(seeds)]
        real = Case("test.txt", truth, mot_tracks(shared_data() / "mot" / name / "test.txt"))
        out += made + tracked + [real]
        if pixels:  # the same pieces, with appearance from the rendered scene of seed s
            for s in range(seeds):
                out += [replace(c, family=c.family + " + pixels", pixels=(name, s), seed=s)
                        for c in [made[s]] + tracked[s::seeds] + [real]]
    if held_out:
        for name in HELD_OUT:
            truth = mot_truth(name)
            detections = public_detections(name, truth.frames)
            out.append(Case("MOT17 ByteTrack 30 fps (held out)", truth,
                            collect_bytetrack(detections, 30.0), 30.0))
            out.append(Case("MOT17 ByteTrack 15 fps (held out)", every_nth_frame(truth, 2),
                            collect_bytetrack(detections[::2], 15.0), 15.0))
    if rendered:
        from crossing_scenes import crossing_scene

        for name in SEQUENCES:
            for seed in range(rendered):
                scene = crossing_scene(name, seed)
                out.append(Case("rendered ByteTrack + Re-ID", scene.truth,
                                collect_bytetrack(scene.detections, 25.0), 25.0,
                                scene.detections, scene.embeddings, seed=seed))
    return out


# ---------------------------------------------------------------------------- scoring
def identities(tracks: Sequence[Track], truth: Truth) -> dict[int, int]:
    """Track id -> the truth id it matches on more than half of its frames (IoU >= 0.5,
    one-to-one per frame), or -1."""
    at: dict[int, list[tuple[int, np.ndarray]]] = {}
    for track in tracks:
        for f, b in zip(track.frames.tolist(), track.boxes):
            at.setdefault(f, []).append((track.track_id, b))
    votes: dict[int, dict[int, int]] = {t.track_id: {} for t in tracks}
    for f, rows in at.items():
        if f >= truth.frames or not len(truth.ids[f]):
            continue
        overlap = iou_matrix(np.array([b for _, b in rows]), truth.boxes[f])
        r, c = linear_sum_assignment(overlap, maximize=True)
        for i, j in zip(r, c):
            if overlap[i, j] >= 0.5:
                v = votes[rows[i][0]]
                g = int(truth.ids[f][j])
                v[g] = v.get(g, 0) + 1
    out = {}
    for track in tracks:
        v = votes[track.track_id]
        best = max(v, key=v.get) if v else -1
        out[track.track_id] = best if v and 2 * v[best] > len(track.frames) else -1
    return out


def needed_joins(tracks: Sequence[Track], identity: dict[int, int]) -> int:
    counts: dict[int, int] = {}
    for t in tracks:
        if identity[t.track_id] >= 0:
            counts[identity[t.track_id]] = counts.get(identity[t.track_id], 0) + 1
    return sum(c - 1 for c in counts.values())


@dataclass
class Outcome:
    right: np.ndarray  # per proposal, bool
    confidence: np.ndarray
    score: np.ndarray
    lead: np.ndarray
    jumped: np.ndarray
    appearance: np.ndarray  # per proposal, nan without embeddings
    gap: np.ndarray
    after_refine: dict[str, np.ndarray]  # the same columns (and right) for the proposals
    # made on refine's output
    needed: int  # joins a person would have to find by hand in the pieces
    needed_after_refine: int
    metrics: dict[str, dict[str, float]]  # row -> IDF1, HOTA


def _column(proposals, name: str) -> np.ndarray:
    return np.array([np.nan if getattr(p, name) is None else float(getattr(p, name))
                     for p in proposals], dtype=np.float64)


def run_case(case: Case, config: ProposalConfig, min_confidence: float,
             metrics: bool = True) -> Outcome:
    proposal_config = config.at_frame_rate(case.fps)
    refine_config = RefineConfig().at_frame_rate(case.fps)
    fill = replace(refine_config, link=False)
    identity = identities(case.tracks, case.truth)
    proposals = propose_merges(case.tracks, appearance=case.appearance(case.tracks),
                               config=proposal_config)
    right = np.array([identity[p.before] == identity[p.after] >= 0 for p in proposals], bool)
    refined = refine_tracks(case.tracks, config=refine_config).tracks
    refined_identity = identities(refined, case.truth)
    on_refined = propose_merges(refined, appearance=case.appearance(refined),
                                config=proposal_config)
    rows: dict[str, dict[str, float]] = {}
    if metrics:
        joined = apply_proposals(case.tracks, proposals, min_confidence=min_confidence)[0]
        both = apply_proposals(refined, on_refined, min_confidence=min_confidence)[0]
        for row, tracks in (("pieces", case.tracks), ("refine", refined),
                            ("proposals", refine_tracks(joined, config=fill).tracks),
                            ("refine + proposals", refine_tracks(both, config=fill).tracks)):
            m = tracking_metrics(case.truth, per_frame(tracks, case.truth.frames))
            rows[row] = {"IDF1": m["IDF1"], "HOTA": m["HOTA"]}
    refined_right = np.array([refined_identity[p.before] == refined_identity[p.after] >= 0
                              for p in on_refined], bool)
    return Outcome(right, np.array([p.confidence for p in proposals]),
                   np.array([p.score for p in proposals]), np.array([p.lead for p in proposals]),
                   np.array([p.jump >= proposal_config.switch_jump for p in proposals], float),
                   _column(proposals, "appearance"), _column(proposals, "gap"),
                   {"right": refined_right, "confidence": _column(on_refined, "confidence"),
                    "score": _column(on_refined, "score"), "lead": _column(on_refined, "lead"),
                    "jumped": np.array([p.jump >= proposal_config.switch_jump
                                        for p in on_refined], float),
                    "appearance": _column(on_refined, "appearance"),
                    "gap": _column(on_refined, "gap")},
                   needed_joins(case.tracks, identity),
                   needed_joins(refined, refined_identity), rows)


def dump(path: str, all_cases: Sequence[Case], outcomes: Sequence[Outcome]) -> None:
    """Every proposal, on the pieces (stage 0) and on refine's output (stage 1), with the
    case's family, seed and number: right, score, lead, jumped, appearance, gap."""
    columns: dict[str, list] = {k: [] for k in ("family", "seed", "case", "stage", "right",
                                                 "score", "lead", "jumped", "appearance",
                                                 "gap", "confidence")}
    for n, (case, o) in enumerate(zip(all_cases, outcomes)):
        raw = {"right": o.right, "score": o.score, "lead": o.lead, "jumped": o.jumped,
               "appearance": o.appearance, "gap": o.gap, "confidence": o.confidence}
        for stage, part in enumerate((raw, o.after_refine)):
            k = len(part["right"])
            columns["family"] += [case.family] * k
            columns["seed"] += [case.seed] * k
            columns["case"] += [n] * k
            columns["stage"] += [stage] * k
            for name in ("right", "score", "lead", "jumped", "appearance", "gap", "confidence"):
                columns[name] += list(part[name])
    np.savez(path, **{k: np.asarray(v) for k, v in columns.items()})


def _logit(p: np.ndarray, eps: float) -> np.ndarray:
    p = np.clip(p, eps, 1 - eps)
    return np.log(p / (1 - p))


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[float, ...]:
    """Logistic regression (maximum likelihood, a slight ridge)."""
    def loss(c):
        z = x @ c
        return float(np.sum(np.logaddexp(0, z) - y * z) + 1e-3 * c @ c)

    return tuple(float(v) for v in minimize(loss, np.zeros(x.shape[1]), method="BFGS").x)


def calibrate(outcomes: Sequence[Outcome]) -> tuple[float, ...]:
    """right ~ c0 + c1 logit(score) + c2 lead + c3 jumped, on the proposals on the pieces."""
    score = np.concatenate([o.score for o in outcomes])
    x = np.column_stack([np.ones(len(score)), _logit(score, 1e-6),
                         np.concatenate([o.lead for o in outcomes]),
                         np.concatenate([o.jumped for o in outcomes])])
    return _fit(x, np.concatenate([o.right for o in outcomes]).astype(float))


def _rows(outcomes: Sequence[Outcome]) -> dict[str, np.ndarray]:
    """Every proposal of these outcomes, on the pieces and on refine's output."""
    parts = [{"right": o.right, "score": o.score, "lead": o.lead, "jumped": o.jumped,
              "appearance": o.appearance, "confidence": o.confidence} for o in outcomes]
    parts += [o.after_refine for o in outcomes]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def appearance_features(rows: dict[str, np.ndarray]) -> np.ndarray:
    return np.column_stack([np.ones(len(rows["score"])), _logit(rows["score"], 1e-6),
                            rows["lead"], rows["jumped"], _logit(rows["appearance"], 1e-3)])


def calibrate_appearance(outcomes: Sequence[Outcome]) -> tuple[float, ...]:
    """right ~ a0 + a1 logit(score) + a2 lead + a3 jumped + a4 logit(appearance), on the
    proposals with appearance, on the pieces and on refine's output."""
    rows = _rows(outcomes)
    has = np.isfinite(rows["appearance"])
    rows = {k: v[has] for k, v in rows.items()}
    return _fit(appearance_features(rows), rows["right"].astype(float))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="check the script runs, no numbers: TUD-Campus, 1 seed")
    parser.add_argument("--seeds", type=int, help="seeds per input kind (default 10)")
    parser.add_argument("--calibrate", action="store_true",
                        help="fit the confidence calibration on these inputs and print it")
    parser.add_argument("--held-out", action="store_true",
                        help="also MOT17-02/04/09, ByteTrack on public detections (30 fps)")
    parser.add_argument("--rendered", type=int, default=0, metavar="S",
                        help="also ByteTrack + Re-ID appearance on rendered scenes, seeds 0..S-1")
    parser.add_argument("--pixels", action="store_true",
                        help="also the TUD inputs with appearance: Re-ID of their boxes' crops "
                             "of the rendered TUD scenes (crossing_scenes.render, seed s)")
    parser.add_argument("--dump", metavar="NPZ",
                        help="save every proposal's features (for fitting the calibration)")
    args = parser.parse_args(argv)
    seeds = args.seeds or (1 if args.quick else 10)
    started = time.perf_counter()
    config = ProposalConfig()
    all_cases = cases(seeds, args.quick, args.held_out, args.rendered, args.pixels)
    outcomes = [run_case(c, config, DEFAULT_MIN_CONFIDENCE) for c in all_cases]
    if args.dump:
        dump(args.dump, all_cases, outcomes)
    families = list(dict.fromkeys(c.family for c in all_cases))
    fitted = fitted_appearance = None
    if args.calibrate:
        tud = [o for c, o in zip(all_cases, outcomes)
               if "held out" not in c.family and "rendered" not in c.family
               and "pixels" not in c.family]
        fitted = calibrate(tud)
        # appearance: fitted on the pixel inputs of the first half of the seeds, checked on
        # the second half and on the rendered scenes (another detector's boxes)
        half = max(1, seeds // 2)
        fit_on = [(c, o) for c, o in zip(all_cases, outcomes)
                  if c.family.endswith("+ pixels") and c.seed < half]
        check = [(c, o) for c, o in zip(all_cases, outcomes)
                 if (c.family.endswith("+ pixels") and c.seed >= half)
                 or c.family.startswith("rendered")]
        if fit_on:
            fitted_appearance = calibrate_appearance([o for _, o in fit_on])

    print(header("Merge proposals: precision, recall, IDF1/HOTA before and after"))
    print(f"Default confidence {DEFAULT_MIN_CONFIDENCE}; seeds 0..{seeds - 1} per made / "
          "ByteTrack input; 'joins needed' = pieces minus people, summed.\n")
    rows = []
    for family in families:
        group = [o for c, o in zip(all_cases, outcomes) if c.family == family]
        right = np.concatenate([o.right for o in group])
        conf = np.concatenate([o.confidence for o in group])
        needed = sum(o.needed for o in group)
        for level in CONFIDENCES:
            shown = conf >= level
            found = int(right[shown].sum())
            precision = f"{found / shown.sum():.3f}" if shown.sum() else "-"
            rows.append([family, len(group), f"{level:.2f}", int(shown.sum()), found, needed,
                         precision, f"{found / max(needed, 1):.3f}"])
    print(markdown_table(["input", "runs", "confidence >=", "proposals", "right", "joins needed",
                          "precision", "recall"], rows, [False] + [True] * 7))
    print()
    rows = []
    for family in families:
        group = [o for c, o in zip(all_cases, outcomes) if c.family == family]
        for row in ("pieces", "refine", "proposals", "refine + proposals"):
            idf1 = np.mean([o.metrics[row]["IDF1"] for o in group])
            hota = np.mean([o.metrics[row]["HOTA"] for o in group])
            rows.append([family, row, f"{100 * idf1:.1f}", f"{100 * hota:.1f}"])
    print(markdown_table(["input", "tracks", "IDF1", "HOTA"], rows, [False, False, True, True]))
    print()
    rows = []
    for family in families:
        group = [o for c, o in zip(all_cases, outcomes) if c.family == family]
        shown = np.concatenate([o.confidence for o in group]) >= DEFAULT_MIN_CONFIDENCE
        right = np.concatenate([o.right for o in group])
        rows.append([family, sum(o.needed for o in group),
                     sum(o.needed_after_refine for o in group),
                     int(np.concatenate([o.confidence for o in group]).size),
                     int(shown.sum()), int(right[shown].sum())])
    print("Work: joins a person finds by hand in the pieces, and after refine; proposals to "
          "read in all, proposals at the default confidence and the right ones among them.\n")
    print(markdown_table(["input", "joins by hand", "after refine", "proposals",
                          f"at >= {DEFAULT_MIN_CONFIDENCE}", "right"], rows))
    if fitted is not None:
        right = np.concatenate([o.right for o in tud])
        print(f"\ncalibration fitted on {len(right)} proposals ({int(right.sum())} right): "
              "calibration=(" + ", ".join(f"{v:.2f}" for v in fitted) + ")")
    if fitted_appearance is not None:
        right = _rows([o for _, o in fit_on])["right"]
        print(f"\nappearance calibration fitted on the pixel inputs, seeds 0..{half - 1} "
              f"({len(right)} proposals on the pieces and after refine, {int(right.sum())} "
              "right): appearance_calibration=("
              + ", ".join(f"{v:.2f}" for v in fitted_appearance) + ")")
        print("checked on seeds >= {half} and the rendered scenes (proposals on the pieces and "
              "after refine), with the fitted and with the current calibration:\n"
              .replace("{half}", str(half)))
        table = []
        for family in dict.fromkeys(c.family for c, _ in check):
            rows = _rows([o for c, o in check if c.family == family])
            has = np.isfinite(rows["appearance"])
            z = appearance_features({k: v[has] for k, v in rows.items()}) @ \
                np.array(fitted_appearance)
            refit = 1 / (1 + np.exp(-z))
            right = rows["right"][has]
            for level in (0.8, 0.9, 0.95):
                cells = [family, f"{level:.2f}"]
                for conf in (refit, rows["confidence"][has]):
                    shown = conf >= level
                    cells += [f"{int(right[shown].sum())} / {int(shown.sum())}"]
                table.append(cells)
        print(markdown_table(["input", "confidence >=", "right / shown (fitted)",
                              "right / shown (current)"], table))
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
