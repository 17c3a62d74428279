"""Agreement of our ByteTrack with ultralytics' BYTETracker on the same detections, and
controls that make each known systematic difference bite on its own.

Run: python tools/bench/agreement.py [--quick]

Both trackers get identical detections and corresponding settings (``peers`` converts);
``peers.agreement`` pairs their boxes per frame (IoU >= 0.99) and checks the IDs map
one-to-one. Two settings: our default (the ByteTrack paper's MOT17 values) and
ultralytics' own ``bytetrack.yaml`` defaults expressed as a ``ByteTrackConfig``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

import numpy as np

from common import header, markdown_table, shared_data, vtest_detections

from autotrack import peers
from autotrack.assignment import linear_assignment
from autotrack.detections import Detections, TrackedObjects
from autotrack.export.mot import read_mot
from autotrack.synthetic import SceneConfig, make_scene
from autotrack.trackers.bytetrack import ByteTrack, ByteTrackConfig

OURS_DEFAULT = ByteTrackConfig()
ULTRALYTICS_DEFAULT = ByteTrackConfig(  # ultralytics/cfg/trackers/bytetrack.yaml (8.4)
    track_high_thresh=0.25, track_low_thresh=0.1, new_track_thresh=0.25, track_buffer=30,
    match_thresh=0.8, fuse_score=True)
CONFIGS = {"ours (MOT17)": OURS_DEFAULT, "ultralytics defaults": ULTRALYTICS_DEFAULT}
Frames = list[Detections]
# --quick checks that the script still runs end to end, on the least input that does
QUICK_VTEST_FRAMES = 100
QUICK_SYNTHETIC_FRAMES = 30
QUICK_SOLVER_TRIALS = 100


# ----------------------------------------------------------------------------- sources
def jittered_ground_truth(name: str, seed: int = 1) -> Frames:
    """A MOT sequence's ground truth made detector-like: boxes jittered by 3% of their size,
    5% missed, 15% scored low (0.12-0.5, as occluded objects are), about 2% of frames
    with a false positive; identities dropped."""
    truth = read_mot(shared_data() / "mot" / name / "gt.txt")
    frames = max(int(t.frames.max()) for t in truth.values()) + 1
    rng = np.random.default_rng(seed)
    rows: list[list[tuple[float, ...]]] = [[] for _ in range(frames)]
    for track in truth.values():
        for frame, box in zip(track.frames, track.boxes):
            if rng.random() < 0.05:
                continue
            size = np.tile(box[2:] - box[:2], 2)
            low = rng.random() < 0.15
            score = rng.uniform(0.12, 0.5) if low else rng.uniform(0.55, 0.95)
            rows[int(frame)].append((*(box + rng.normal(0, 0.03, 4) * size), score))
    for frame in range(frames):
        if rng.random() < 0.02:
            x, y = rng.uniform(0, 600), rng.uniform(0, 400)
            rows[frame].append((x, y, x + 40, y + 100, rng.uniform(0.1, 0.7)))
    return [_detections(r) for r in rows]


def _detections(rows: Sequence[tuple[float, ...]]) -> Detections:
    table = np.array(rows, dtype=np.float64).reshape(-1, 5)
    return Detections(table[:, :4], table[:, 4], np.zeros(len(table), dtype=np.int64))


def sources(quick: bool) -> dict[str, Frames]:
    frames = QUICK_SYNTHETIC_FRAMES if quick else 300
    vtest = vtest_detections()
    if quick:
        vtest = vtest[:QUICK_VTEST_FRAMES]
    found = {f"YOLOX-Nano vtest ({len(vtest)} f)": vtest}
    for objects in (20, 200):
        scene = make_scene(SceneConfig(objects=objects, frames=frames, seed=objects))
        found[f"synthetic {objects} obj ({frames} f)"] = scene.detections
    for name in ("TUD-Campus",) if quick else ("TUD-Campus", "TUD-Stadtmitte"):
        detections = jittered_ground_truth(name)
        found[f"{name} jittered gt ({len(detections)} f)"] = detections
    return found


# ---------------------------------------------------------------------------- running
def run_ours(config: ByteTrackConfig, detections: Frames) -> list[TrackedObjects]:
    tracker = ByteTrack(config)
    return [tracker.update(d) for d in detections]


def run_ultralytics(tracker: Any, detections: Frames) -> list[TrackedObjects]:
    return [peers.from_ultralytics(tracker.update(peers.ultralytics_results(d)))
            for d in detections]


def raw_ultralytics(config: ByteTrackConfig, track_buffer: int) -> Any:
    """ultralytics' BYTETracker given ``track_buffer`` as is (no frame-rate scaling)."""
    from ultralytics.trackers.byte_tracker import BYTETracker

    return BYTETracker(SimpleNamespace(
        track_high_thresh=config.track_high_thresh, track_low_thresh=config.track_low_thresh,
        new_track_thresh=config.new_track_thresh, track_buffer=track_buffer,
        match_thresh=config.match_thresh, fuse_score=config.fuse_score))


def float64_ultralytics(config: ByteTrackConfig) -> Any:
    """ultralytics' BYTETracker, except that detections are kept (``STrack._tlwh``) and
    results returned in float64 rather than float32: a control, nothing more."""
    from ultralytics.trackers.byte_tracker import BYTETracker, STrack
    from ultralytics.utils.ops import xywh2ltwh

    class STrack64(STrack):
        def __init__(self, xywh: np.ndarray, score: float, cls: object) -> None:
            super().__init__(xywh, score, cls)
            self._tlwh = np.asarray(xywh2ltwh(xywh[:4]), dtype=np.float64)

    class BYTETracker64(BYTETracker):
        track_class = STrack64

        def _format_output(self) -> np.ndarray:
            return np.asarray([t.result for t in self.tracked_stracks if t.is_activated],
                              dtype=np.float64)

    tracker = peers.ultralytics_bytetrack(config)
    return BYTETracker64(tracker.args)


def prompt_expiry_ultralytics(config: ByteTrackConfig) -> Any:
    """ultralytics' BYTETracker, except that lost tracks expiring this frame leave
    ``lost_stracks`` this frame. As shipped, ``merge_track_pools`` subtracts
    ``removed_stracks`` before this frame's removals are added to it (the order of
    ByteTrack's reference code), so they stay one more frame. A control, nothing more."""
    from ultralytics.trackers.byte_tracker import BYTETracker

    class PromptExpiry(BYTETracker):
        def _remove_stale_lost(self, removed: list) -> None:
            super()._remove_stale_lost(removed)
            self.removed_stracks.extend(removed)  # seen by merge_track_pools' subtraction

    return PromptExpiry(peers.ultralytics_bytetrack(config).args)


@dataclass(frozen=True)
class Comparison:
    result: peers.Agreement
    same_ids: float  # share of (frame, ID) entries output by both (Jaccard index)
    divergence: str | None  # first frame where the outputs differ, described


def compare(ours: Sequence[TrackedObjects], theirs: Sequence[TrackedObjects]) -> Comparison:
    result = peers.agreement(ours, theirs)
    both = sum(len(np.intersect1d(a.track_ids, b.track_ids)) for a, b in zip(ours, theirs))
    either = sum(len(np.union1d(a.track_ids, b.track_ids)) for a, b in zip(ours, theirs))
    return Comparison(result, both / either if either else 1.0, first_divergence(ours, theirs))


def first_divergence(ours: Sequence[TrackedObjects], theirs: Sequence[TrackedObjects],
                     tolerance: float = 0.01) -> str | None:
    """The first frame whose ID sets differ or whose boxes differ by more than
    ``tolerance`` px, with the IDs concerned."""
    for frame, (a, b) in enumerate(zip(ours, theirs)):
        if sorted(a.track_ids.tolist()) != sorted(b.track_ids.tolist()):
            only_a = sorted(set(a.track_ids.tolist()) - set(b.track_ids.tolist()))
            only_b = sorted(set(b.track_ids.tolist()) - set(a.track_ids.tolist()))
            return f"frame {frame}: IDs only ours {only_a}, only theirs {only_b}"
        order_a, order_b = np.argsort(a.track_ids), np.argsort(b.track_ids)
        gap = np.abs(a.boxes[order_a] - b.boxes[order_b]).max(axis=1, initial=0.0)
        if (gap > tolerance).any():
            worst = int(np.argmax(gap))
            return (f"frame {frame}: ID {int(a.track_ids[order_a][worst])} box differs by "
                    f"{gap[worst]:.3f} px")
    return None


def agreement_row(label: str, config_name: str, detections: Frames, config: ByteTrackConfig,
                  comparison: Comparison) -> list[str]:
    r = comparison.result
    at_high = sum(int((d.scores == config.track_high_thresh).sum()) for d in detections)
    dets = sum(len(d) for d in detections) / max(len(detections), 1)
    return [label, config_name, f"{dets:.1f}", str(at_high), str(r.paired), str(r.agreeing),
            str(r.only_ours), str(r.only_theirs), f"{r.rate:.2%}",
            f"{comparison.same_ids:.2%}", f"{r.max_box_difference:.1e}"]


AGREEMENT_HEADERS = ["detections", "settings", "dets/frame", "scores == high", "paired",
                     "agreeing", "only ours", "only theirs", "rate", "same (frame, ID)",
                     "max box diff (px)"]
AGREEMENT_NUMERIC = [False, False] + [True] * 9


# ---------------------------------------------------------------------------- controls
def quantized(detections: Frames, decimals: int = 2) -> Frames:
    """Scores rounded as some detectors (or detection files) report them."""
    return [Detections(d.boxes, np.round(d.scores, decimals), d.class_ids) for d in detections]


def without_score(detections: Frames, score: float) -> Frames:
    return [d.select(d.scores != score) for d in detections]


def absent_then_back(gap: int, before: int = 5, after: int = 3) -> Frames:
    """One object moving right, seen ``before`` frames, gone ``gap`` frames, seen again."""
    def seen(frame: int) -> Detections:
        x = 100.0 + 5.0 * frame
        return _detections([(x, 100.0, x + 40.0, 200.0, 0.9)])

    return ([seen(f) for f in range(before)] + [Detections.empty()] * gap
            + [seen(before + gap + f) for f in range(after)])


def controls(synthetic: Frames, vtest: Frames) -> list[list[str]]:
    """Each known candidate difference, provoked and then neutralised."""
    rows: list[list[str]] = []

    def add(label: str, isolates: str, ours: list[TrackedObjects],
            theirs: list[TrackedObjects]) -> None:
        c = compare(ours, theirs)
        r = c.result
        rows.append([label, isolates, f"{r.rate:.2%}",
                     f"{r.paired}/{r.only_ours}/{r.only_theirs}", f"{r.max_box_difference:.1e}",
                     c.divergence or "none"])

    for name, config in CONFIGS.items():
        high = config.track_high_thresh
        rounded = quantized(synthetic)
        ours = run_ours(config, rounded)
        add(f"synthetic 20, scores rounded to 0.01, {name}",
            f"`>=` vs `>` at high = {high}",
            ours, run_ultralytics(peers.ultralytics_bytetrack(config), rounded))
        add(f"... same, boxes scored exactly {high} withheld from ultralytics only",
            "neutralised", ours,
            run_ultralytics(peers.ultralytics_bytetrack(config), without_score(rounded, high)))

    at_10_fps = replace(OURS_DEFAULT, frame_rate=10.0)  # as `autotrack annotate` on vtest.avi
    ours = run_ours(at_10_fps, vtest)
    add("vtest, 10 fps as the CLI runs it: ultralytics given track_buffer 30",
        "no frame-rate scaling in ultralytics", ours,
        run_ultralytics(raw_ultralytics(at_10_fps, at_10_fps.track_buffer), vtest))
    add(f"... same, given track_buffer {at_10_fps.max_time_lost} (what `peers` passes)",
        "neutralised", ours, run_ultralytics(peers.ultralytics_bytetrack(at_10_fps), vtest))

    buffer = 10
    back = absent_then_back(gap=buffer + 1)
    short = replace(OURS_DEFAULT, track_buffer=buffer)
    ours = run_ours(short, back)
    add(f"one object absent {buffer + 1} frames (buffer {buffer}), then back",
        "expired lost tracks linger a frame in ultralytics",
        ours, run_ultralytics(peers.ultralytics_bytetrack(short), back))
    add("... same, ultralytics dropping expired tracks the same frame", "neutralised",
        ours, run_ultralytics(prompt_expiry_ultralytics(short), back))
    missing = make_scene(SceneConfig(objects=20, frames=len(synthetic), seed=3, miss_rate=0.3))
    for label, detections, config in (
            ("synthetic 20, 30% missed, buffer 2", missing.detections,
             replace(OURS_DEFAULT, track_buffer=2)),
            ("vtest, buffer 5 (`--track-buffer 15` at 10 fps)", vtest,
             replace(OURS_DEFAULT, track_buffer=5))):
        ours = run_ours(config, detections)
        add(label, "the same, in a stream", ours,
            run_ultralytics(peers.ultralytics_bytetrack(config), detections))
        add("... same, ultralytics dropping expired tracks the same frame", "neutralised",
            ours, run_ultralytics(prompt_expiry_ultralytics(config), detections))

    add("synthetic 20, ultralytics as shipped", "float32 in ultralytics' STrack and output",
        run_ours(OURS_DEFAULT, synthetic),
        run_ultralytics(peers.ultralytics_bytetrack(OURS_DEFAULT), synthetic))
    add("... same, ultralytics keeping boxes and output in float64", "neutralised",
        run_ours(OURS_DEFAULT, synthetic), run_ultralytics(float64_ultralytics(OURS_DEFAULT),
                                                           synthetic))
    return rows


def solver_ties(trials: int = 2000, seed: int = 0) -> list[list[str]]:
    """ultralytics' ``matching.linear_assignment`` (lap.lapjv) vs ours on random cost
    matrices, with and without exact ties."""
    from ultralytics.trackers.utils import matching

    rng = np.random.default_rng(seed)
    threshold = 0.8
    kinds: dict[str, Callable[[tuple[int, int]], np.ndarray]] = {
        "continuous costs (no ties)": lambda shape: rng.uniform(0, 1, shape),
        "costs in steps of 0.1 (ties, some = threshold)":
            lambda shape: rng.integers(1, 10, shape) / 10,
    }
    rows = []
    for label, draw in kinds.items():
        same = same_saving = 0
        for _ in range(trials):
            cost = draw((int(rng.integers(1, 7)), int(rng.integers(1, 7))))
            theirs_pairs, _, _ = matching.linear_assignment(cost, thresh=threshold)
            theirs = {(int(i), int(j)) for i, j in theirs_pairs}
            m = linear_assignment(cost, threshold)
            mine = set(zip(m.rows.tolist(), m.cols.tolist()))
            same += mine == theirs
            saving = [sum(threshold - cost[p] for p in pairs) for pairs in (mine, theirs)]
            same_saving += bool(np.isclose(*saving))
        rows.append([label, str(trials), f"{same / trials:.1%}", f"{same_saving / trials:.1%}"])
    return rows


def symmetric_tie() -> str:
    """One track, then two boxes at the same IoU from it: which one keeps the ID?"""
    first = _detections([(100, 100, 140, 200, 0.9)])
    results = []
    for order in ((90, 110), (110, 90)):
        second = _detections([(x, 100, x + 40, 200, 0.9) for x in order])
        ours = run_ours(OURS_DEFAULT, [first, second])[-1]
        theirs = run_ultralytics(peers.ultralytics_bytetrack(OURS_DEFAULT), [first, second])[-1]
        pick = [("left" if box[0] < 100 else "right") for box in (ours.boxes[0], theirs.boxes[0])]
        results.append(f"boxes listed {'left, right' if order[0] < 100 else 'right, left'}: "
                       f"ours follows the {pick[0]} one, ultralytics the {pick[1]} one")
    return "; ".join(results)


ROOT_CAUSES = """\
Systematic differences (from ultralytics 8.4 `trackers/byte_tracker.py`,
`trackers/utils/matching.py`, `trackers/utils/stracks.py`), each provoked above:

1. **First-stage split, `>=` vs `>`.** ultralytics takes `score >= track_high_thresh` as
   high; ours, like ByteTrack's reference code (`scores > track_thresh`), takes `>`, and
   since both take low boxes as `low < score < high`, ours (and the reference) ignore a box
   scored exactly `track_high_thresh` altogether. Bites only on exact ties (quantised
   scores); withholding those boxes from ultralytics restores 100%.
2. **No frame-rate scaling of the buffer in ultralytics** (`max_frames_lost =
   track_buffer`); ours keeps `int(frame_rate / 30 * track_buffer)` as the reference does.
   `peers.ultralytics_bytetrack` passes our `max_time_lost`, which neutralises it.
3. **Expired lost tracks linger one frame in ultralytics** (also in ByteTrack's reference
   code). `merge_track_pools` runs `lost = sub_stracks(lost, removed_stracks)` *before*
   `removed_stracks.extend(removed)`, so a track expired at frame t stays in `lost_stracks`
   and in frame t+1's association pool (state Removed): it can be re-found with its old ID
   after `buffer + 1` missed frames, it can take a box a live track would get, and once so
   re-found it is still listed in `removed_stracks`, so the next time it is lost it is
   dropped at once instead of after the buffer. Ours removes expired tracks in the frame
   they expire. Invisible with the 30-frame buffer on these sources; with short buffers
   and frequent misses agreement falls well below 100%; an ultralytics that also drops
   them the same frame agrees 100%.
4. **float32 in ultralytics.** `STrack` stores the detection as float32 (`_tlwh`) and turns
   it into the Kalman measurement in float32, IoU is computed in float32 and results are
   returned as float32: boxes differ by ~1e-4 px; keeping float64 there leaves ~1e-12 px.
   A float32 IoU could also flip a decision whose cost lies within ~1e-7 of a threshold;
   never seen here.
5. **lap.lapjv vs SciPy.** Always the same optimum (total saving); different pairs only
   when several matchings are exactly optimal (exact cost ties), and then ours prefers the
   one with more pairs (each admissible pair earns 1e-9) where lapjv picks either.
   Real-valued IoU x score costs practically never tie; in a symmetric tie both take the
   first-listed box.
6. From reading only: ultralytics drops boxes with zero width or height but keeps infinite
   ones, ours drops every non-finite or empty box.
"""


# -------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"check the script runs, no numbers: {QUICK_VTEST_FRAMES} vtest and "
                             f"{QUICK_SYNTHETIC_FRAMES} synthetic frames, TUD-Campus only, "
                             f"{QUICK_SOLVER_TRIALS} solver trials")
    args = parser.parse_args(argv)

    print(header("Agreement of our ByteTrack with ultralytics' BYTETracker"))
    print("Same detections, corresponding settings (via `autotrack.peers`); boxes paired per "
          "frame at IoU >= 0.99, IDs mapped one-to-one. *scores == high*: detections scored "
          "exactly at the first-stage threshold (where the two split differently); "
          "*same (frame, ID)*: share of (frame, track ID) entries output by both, i.e. "
          "whether the ID numbers themselves coincide.\n")
    found = sources(args.quick)
    rows, divergences = [], []
    for label, detections in found.items():
        for config_name, config in CONFIGS.items():
            comparison = compare(run_ours(config, detections),
                                 run_ultralytics(peers.ultralytics_bytetrack(config), detections))
            rows.append(agreement_row(label, config_name, detections, config, comparison))
            if comparison.divergence:
                divergences.append(f"- {label}, {config_name}: {comparison.divergence}")
    print(markdown_table(AGREEMENT_HEADERS, rows, AGREEMENT_NUMERIC))
    print("\nFirst divergences:" if divergences else
          "\nNo divergence: every frame has the same IDs and boxes within 0.01 px.")
    for line in divergences:
        print(line)

    synthetic = next(d for label, d in found.items() if label.startswith("synthetic 20"))
    print("\nControls: each known difference provoked on its own, then neutralised "
          "(paired/only ours/only theirs):\n")
    print(markdown_table(["case", "isolates", "rate", "paired/ours/theirs", "max box diff (px)",
                          "first divergence"], controls(synthetic, found[next(iter(found))]),
                         [False, False, True, True, True, False]))
    print("\nAssignment solvers on random matrices (threshold 0.8): ultralytics' "
          "`matching.linear_assignment` (lap.lapjv) vs our `linear_assignment` (SciPy):\n")
    print(markdown_table(["cost matrices", "trials", "same pairs", "same total saving"],
                         solver_ties(QUICK_SOLVER_TRIALS if args.quick else 2000)))
    print(f"\nSymmetric tie (two boxes at equal IoU from one track): {symmetric_tie()}.\n")
    print(ROOT_CAUSES, end="")


if __name__ == "__main__":
    main()
