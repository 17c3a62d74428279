"""Memory over video length: our streaming segmenters against SAM2's official video predictor.

Why (sam2#196): ``SAM2VideoPredictor.init_state`` loads every frame of the video as a float
tensor and ``propagate_in_video`` keeps every frame's outputs, so its memory grows with the
video until the machine (or GPU) is full. Our :class:`~autotrack.vos.base.VideoSegmenter`
implementations keep a fixed budget. For each case this runs 100 and 1,000 frames, each in
its own subprocess (so one run's peak cannot hide another's), and reports peak RSS
(``getrusage`` ru_maxrss), the bytes the model holds (``memory_stats().feature_bytes``; for
the official predictor, the tensors of its inference state, frames included), the frames it
keeps, and seconds per frame; then the ratio peak(1000) / peak(100), which must stay within
1.10 for ours.

Frames: the bedroom clip (200 frames) ping-ponged 0..199..1..199.. to any length, and
vtest.avi (795 frames) looped; one box prompt on frame 0. Random weights (seeded), CPU,
a small input size (``--image-size``, default 128) so 1,000 frames take minutes.

    python tools/bench/vos_memory.py            # ~35 min on 2 cores
    python tools/bench/vos_memory.py --quick    # sam2 and sam2-official, 2 and 4 bedroom
                                                # frames, 2 children at a time: a check
                                                # that it runs, ~15 s; no numbers
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header, shared_data  # noqa: E402

SEGMENTERS = ("sam2", "xmem", "sam3", "sam2-official")
SOURCES = {"bedroom": [330, 120, 560, 530], "vtest": [430, 80, 490, 260]}
LIMIT = 1.10
# --quick: ours and the official predictor (both child code paths), the shortest lengths
QUICK_SEGMENTERS = ("sam2", "sam2-official")
QUICK_SOURCES = ("bedroom",)
QUICK_FRAMES = "2,4"
QUICK_JOBS = 2


# ------------------------------------------------------------------------------ frames
def frame_indices(source: str, n: int) -> list[int]:
    """Which source frame plays as frame t: bedroom ping-pongs, vtest loops."""
    if source == "bedroom":
        period = list(range(200)) + list(range(198, 0, -1))
        return [period[t % len(period)] for t in range(n)]
    return [t % 795 for t in range(n)]


class Frames:
    """BGR frames by source index, read from disk on demand (no cache that would count in
    the RSS being measured)."""

    def __init__(self, source: str) -> None:
        import cv2

        self.cv2, self.source = cv2, source
        if source == "bedroom":
            self.files = sorted((shared_data() / "videos" / "bedroom").glob("*.jpg"))
        else:
            self.capture, self.next = None, 0

    def __call__(self, index: int) -> np.ndarray:
        if self.source == "bedroom":
            return self.cv2.imread(str(self.files[index]))
        if self.capture is None or index != self.next:
            if self.capture is not None:
                self.capture.release()
            self.capture = self.cv2.VideoCapture(str(shared_data() / "videos" / "vtest.avi"))
            self.capture.set(self.cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = self.capture.read()
        if not ok:
            raise RuntimeError(f"vtest.avi: frame {index} unreadable")
        self.next = index + 1
        return frame


def jpeg_folder(source: str, n: int, scratch: Path) -> Path:
    """A folder of n JPEGs named 00000.jpg.. (what SAM2's ``init_state`` reads)."""
    folder = scratch / f"{source}_{n}"
    if folder.is_dir():
        return folder
    folder.mkdir(parents=True)
    frames = Frames(source)
    extracted = scratch / f"{source}_frames"
    extracted.mkdir(exist_ok=True)
    for t, index in enumerate(frame_indices(source, n)):
        src = extracted / f"{index:05d}.jpg"
        if source == "bedroom":
            src = frames.files[index]
        elif not src.exists():  # atomic: children running at once may share this folder
            partial = extracted / f"{index:05d}.{os.getpid()}.tmp.jpg"
            frames.cv2.imwrite(str(partial), frames(index))
            partial.replace(src)
        (folder / f"{t:05d}.jpg").symlink_to(src)
    return folder


# ------------------------------------------------------------------------------- child
def _tensor_bytes(obj) -> int:
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def run_ours(segmenter: str, source: str, n: int, image_size: int) -> dict:
    from autotrack.vos.base import ObjectPrompt

    if segmenter == "sam2":
        from autotrack.vos.sam2 import build_sam2_segmenter

        model = build_sam2_segmenter(image_size=image_size, random_init=True)
    elif segmenter == "xmem":
        from autotrack.vos.xmem import build_xmem_segmenter

        model = build_xmem_segmenter(size=image_size, random_init=True)
    else:  # SAM3's shrunken random configuration; random scores are low, so every detection
        # is kept and starts an object: the object cap, not the detector, bounds the memory
        from autotrack.vos.sam3 import build_sam3_concept_tracker

        model = build_sam3_concept_tracker(["person", "bed"], "random", config="tiny",
                                           keep_score=0.0, new_object_score=0.0)
    frames = Frames(source)
    prompts = [] if segmenter == "sam3" else [ObjectPrompt(1, box=tuple(SOURCES[source]))]
    model.reset()
    after_build = _peak_rss()
    peak_bytes = peak_kept = 0
    seconds = 0.0
    for t, index in enumerate(frame_indices(source, n)):
        image = frames(index)
        started = time.perf_counter()
        model.step(image, prompts if t == 0 else [])
        seconds += time.perf_counter() - started
        stats = model.memory_stats()
        peak_bytes = max(peak_bytes, stats.feature_bytes)
        peak_kept = max(peak_kept, stats.frames_kept)
    return {"peak_rss": _peak_rss(), "build_rss": after_build, "feature_bytes": peak_bytes,
            "frames_kept": peak_kept, "s_per_frame": seconds / n}


def run_official(source: str, n: int, image_size: int, scratch: Path) -> dict:
    import torch
    from sam2.build_sam import build_sam2_video_predictor

    folder = jpeg_folder(source, n, scratch)
    torch.manual_seed(0)
    predictor = build_sam2_video_predictor(
        "configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=None, device="cpu",
        hydra_overrides_extra=[f"++model.image_size={image_size}"])
    after_build = _peak_rss()
    started = time.perf_counter()
    with torch.inference_mode():
        state = predictor.init_state(str(folder), offload_video_to_cpu=False,
                                     offload_state_to_cpu=False)
        predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1, box=SOURCES[source])
        for _ in predictor.propagate_in_video(state):
            pass
    seconds = time.perf_counter() - started
    kept = len(state["output_dict_per_obj"][0]["cond_frame_outputs"]) + len(
        state["output_dict_per_obj"][0]["non_cond_frame_outputs"])
    return {"peak_rss": _peak_rss(), "build_rss": after_build,
            "feature_bytes": _tensor_bytes(state), "frames_kept": kept,
            "s_per_frame": seconds / n}


def child(args) -> None:
    warnings.filterwarnings("ignore")
    if args.segmenter == "sam2-official":
        result = run_official(args.source, args.frames, args.image_size, Path(args.scratch))
    else:
        result = run_ours(args.segmenter, args.source, args.frames, args.image_size)
    print("RESULT " + json.dumps(result), flush=True)


# ------------------------------------------------------------------------------ parent
def measure(segmenter: str, source: str, n: int, image_size: int, scratch: Path,
            jobs: int = 1) -> dict:
    command = [sys.executable, __file__, "--child", "--segmenter", segmenter, "--source", source,
               "--frames", str(n), "--image-size", str(image_size), "--scratch", str(scratch)]
    threads = max(1, (os.cpu_count() or 1) // jobs)
    done = subprocess.run(command, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": os.environ.get(
                              "OMP_NUM_THREADS", str(threads))})
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise RuntimeError(f"{segmenter} {source} {n}: exit {done.returncode}\n"
                           f"{done.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="check the script runs, no numbers: "
                             f"{', '.join(QUICK_SEGMENTERS)} on {QUICK_FRAMES} frames of "
                             f"{', '.join(QUICK_SOURCES)}, {QUICK_JOBS} children at a time "
                             "(options given explicitly still apply)")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--segmenters", help=f"default {','.join(SEGMENTERS)}")
    parser.add_argument("--sources", help=f"default {','.join(SOURCES)}")
    parser.add_argument("--frames", default=None, help="two lengths, e.g. 100,1000")
    parser.add_argument("--jobs", type=int,
                        help="children run at once (default 1: measured alone; the peak RSS "
                             "of each is its own either way, its s/frame is not)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--segmenter", help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.frames = int(args.frames)
        child(args)
        return 0
    quick = args.quick
    lengths = [int(v) for v in (args.frames or (QUICK_FRAMES if quick else "100,1000")).split(",")]
    sources = (args.sources.split(",") if args.sources
               else list(QUICK_SOURCES if quick else SOURCES))
    segmenters = (args.segmenters.split(",") if args.segmenters
                  else list(QUICK_SEGMENTERS if quick else SEGMENTERS))
    jobs = args.jobs or (QUICK_JOBS if quick else 1)
    print(header(f"vos_memory: peak memory at {lengths[0]} and {lengths[-1]} frames, "
                 f"{args.image_size} px, random weights, CPU"))
    if jobs > 1:
        print(f"{jobs} children at a time: each peak RSS is its own, s/frame is shared time.\n")
    print("| segmenter | frames | video | peak RSS MiB | model RSS MiB | held MiB | frames kept "
          "| s/frame |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    scratch = Path(tempfile.mkdtemp(prefix="vos_memory_"))
    ratios, failed = [], False
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        runs = {(source, segmenter, n): pool.submit(measure, segmenter, source, n,
                                                    args.image_size, scratch, jobs)
                for source in sources for segmenter in segmenters for n in lengths}
        for source in sources:
            for segmenter in segmenters:
                peaks = []
                for n in lengths:
                    r = runs[source, segmenter, n].result()  # in order, whatever ran first
                    peaks.append(r["peak_rss"])
                    print(f"| {segmenter} | {n} | {source} | {r['peak_rss'] / 2**20:.0f} | "
                          f"{r['build_rss'] / 2**20:.0f} | {r['feature_bytes'] / 2**20:.2f} | "
                          f"{r['frames_kept']} | {r['s_per_frame']:.3f} |", flush=True)
                ratio = peaks[-1] / peaks[0]
                ratios.append((segmenter, source, ratio))
    finally:
        pool.shutdown(cancel_futures=True)  # after a failure, start no further children
        shutil.rmtree(scratch, ignore_errors=True)
    print()
    print(f"| segmenter | video | peak({lengths[-1]}) / peak({lengths[0]}) |")
    print("|---|---|---:|")
    for segmenter, source, ratio in ratios:
        ours = segmenter != "sam2-official"
        over = ours and ratio > LIMIT
        failed |= over and not args.quick
        note = f" (over {LIMIT})" if over else ""
        print(f"| {segmenter} | {source} | {ratio:.3f}{note} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
