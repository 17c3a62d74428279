"""How ``autotrack annotate`` spends the machine: threads, frames in flight, skipped frames.

On a CPU the default runs one single-threaded detector call per core at once on consecutive
frames while a reader thread decodes ahead (:mod:`autotrack.overlap`): on a 2-core machine
that beats one call on two threads, whose threads wait for each other inside every layer.
``--sequential`` keeps the original loop (read, detect, track, one frame after another, the
detector on onnxruntime's default threads), which gives the same tracks, slower. On a GPU
one worker sends ``--batch`` frames per call.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from autotrack.errors import InputError

DEFAULT_GPU_BATCH = 8


def on_gpu(device: str | None) -> bool:
    return device is not None and str(device).lower() not in ("", "cpu")


@dataclass(frozen=True)
class SpeedOptions:
    sequential: bool = False  # the original one-frame-at-a-time loop
    threads: int | None = None  # CPU threads for detection in all; None: os.cpu_count()
    workers: int | None = None  # frames detected at once; None: one per thread (CPU), 1 (GPU)
    batch: int | None = None  # frames per detector call; None: 1 on a CPU, 8 on a GPU
    detect_every: int = 1  # run the detector on every K-th frame only (detect_every.py)
    device: str | None = None

    def __post_init__(self) -> None:
        for name in ("threads", "workers", "batch"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"--{name} must be at least 1, got {value}")
        if self.detect_every < 1:
            raise InputError(f"--detect-every must be at least 1, got {self.detect_every}")

    @property
    def total_threads(self) -> int:
        return self.threads or os.cpu_count() or 1

    @property
    def frames_at_once(self) -> int:
        """Detector calls running at once (the worker threads)."""
        if self.sequential:
            return 1
        if self.workers is not None:
            return self.workers
        return 1 if on_gpu(self.device) else self.total_threads

    @property
    def frames_per_call(self) -> int:
        if self.batch is not None:
            return self.batch
        return DEFAULT_GPU_BATCH if on_gpu(self.device) and not self.sequential else 1

    @property
    def session_threads(self) -> int | None:
        """onnxruntime intra-op threads per detector session: its default when sequential
        without --threads (the original pipeline), else the threads shared among workers."""
        if self.sequential:
            return self.threads
        return max(1, self.total_threads // self.frames_at_once)

    def describe(self) -> str:
        if self.sequential:
            mode = "sequential"
        else:
            mode = (f"{self.frames_at_once} frame(s) at once, {self.session_threads} "
                    f"thread(s) each, {self.frames_per_call} per call")
        every = f", detecting every {self.detect_every} frames" if self.detect_every > 1 else ""
        return mode + every

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SpeedOptions:
        return cls(sequential=args.sequential, threads=args.threads, workers=args.workers,
                   batch=args.batch, detect_every=args.detect_every, device=args.device)


def add_speed_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads for the detector in all (default: the machine's "
                             f"cores, {os.cpu_count()} here)")
    parser.add_argument("--workers", type=int, metavar="W",
                        help="frames detected at once, each on threads/W onnxruntime threads "
                             "(default: one per thread on a CPU, 1 on a GPU)")
    parser.add_argument("--batch", type=int, metavar="B",
                        help=f"frames per detector call (default 1 on a CPU, "
                             f"{DEFAULT_GPU_BATCH} with --device cuda)")
    parser.add_argument("--detect-every", type=int, default=1, metavar="K",
                        help="run the detector on every K-th frame only; the frames between "
                             "get boxes on the line between the tracked ones (default 1: all)")
    parser.add_argument("--sequential", action="store_true",
                        help="the original loop: read, detect and track one frame after "
                             "another (same tracks, slower)")
