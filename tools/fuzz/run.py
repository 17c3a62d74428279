"""The fuzzing campaign's long run (see docs/fuzzing.md).

Run: python tools/fuzz/run.py [--kind K[,K...]|all] [--requests N] [--seed S]
                              [--json FILE] [--save-dir DIR] [--quick] [--in-process]
     python tools/fuzz/run.py --replay DIR/sam2-tracker-17-no-5xx.json

Each kind runs in its own process (its own memory to watch, and a crash of one does not end
the others; a crash is reported with the request it happened on), one after another. The
summary goes to stdout, progress to stderr; ``--json`` also writes the summaries, with the
first violating requests (truncated) and ``--save-dir`` each of those in full for
``--replay``. Exit status 1 when any invariant was violated.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz import KINDS  # noqa: E402
from fuzz.campaign import _stderr, format_summary, memory_guard, replay, run_kind  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]


def default_data_dir() -> Path:
    configured = os.environ.get("AUTOTRACK_TEST_DATA")
    return Path(configured) if configured else REPO_ROOT.parent / "shared" / "data"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", default="all",
                        help=f"comma-separated kinds or 'all': {', '.join(KINDS)}")
    parser.add_argument("--requests", type=int, default=10_000, help="per kind (10000)")
    parser.add_argument("--seed", default="12")
    parser.add_argument("--json", type=Path, help="also write the summaries here")
    parser.add_argument("--save-dir", type=Path, help="write the violating requests in full")
    parser.add_argument("--records", type=Path,
                        help="a folder for one JSON-lines file per kind: every request's "
                             "status, escape, wall and CPU time, error size, RSS, mutations")
    parser.add_argument("--examples", type=int, default=6,
                        help="violating requests kept per kind (6)")
    parser.add_argument("--start", type=int, default=0,
                        help="index of the first request (--requests is then the end index): to "
                             "resume a stateless kind after a crash")
    parser.add_argument("--quick", action="store_true",
                        help="the test slice's profile: images up to 1024 px, few objects "
                             "per request, small SOT session store")
    parser.add_argument("--in-process", action="store_true",
                        help="run every kind in this process (no crash isolation)")
    parser.add_argument("--data", type=Path, default=default_data_dir(),
                        help="the shared data folder (models/, videos/)")
    parser.add_argument("--replay", type=Path, nargs="+", help="re-send saved requests")
    parser.add_argument("--max-rss-gb", type=float, default=8.0,
                        help="end a kind's process whose memory passes this (8 GiB): "
                             "reported as a crash at the request that did it")
    parser.add_argument("--child-json", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--journal", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def kinds_of(text: str) -> list[str]:
    if text == "all":
        return list(KINDS)
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise SystemExit(f"unknown kind(s) {unknown}: {', '.join(KINDS)}")
    return kinds


def run_child(kind: str, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        out, journal = Path(tmp) / "summary.json", Path(tmp) / "journal.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--kind", kind,
                   "--requests", str(args.requests), "--seed", str(args.seed),
                   "--examples", str(args.examples), "--data", str(args.data),
                   "--start", str(args.start),
                   "--child-json", str(out), "--journal", str(journal),
                   "--max-rss-gb", str(args.max_rss_gb)]
        if args.quick:
            command.append("--quick")
        if args.save_dir:
            command += ["--save-dir", str(args.save_dir)]
        if args.records:
            command += ["--records", str(args.records)]
        started = time.perf_counter()
        log = Path(tmp) / "stderr.txt"
        # OpenMP threads that sleep while they wait: spinning ones burn CPU whenever other
        # work shares the cores, and the 5-second invariant counts CPU time as work
        environ = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY",
                                                                    "PASSIVE")}
        with log.open("w") as stderr:  # progress lines, warnings, cv2's complaints
            process = subprocess.run(command, stderr=stderr, env=environ, check=False)
        tail = log.read_text(errors="replace")
        for line in tail.splitlines():
            if line.startswith((f"{kind}: ", "  File")) or "Traceback" in line:
                _stderr(line)
        if process.returncode == 0 and out.exists():
            return json.loads(out.read_text())
        last = json.loads(journal.read_text()) if journal.exists() else {}
        return {"kind": kind, "crashed": f"exit status {process.returncode} after "
                                         f"{time.perf_counter() - started:.0f} s",
                "index": last.get("index"), "notes": last.get("notes"),
                "memory_guard": last.get("memory_guard"),
                "stderr_tail": tail[-3000:]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.replay:
        for path in args.replay:
            outcome = replay(path, args.data)
            print(f"{path}: status {outcome.status} escaped {outcome.escaped} "
                  f"{outcome.seconds:.3f} s (cpu {outcome.cpu_seconds:.3f} s) error "
                  f"{outcome.error_bytes} B {outcome.problem or ''}\n{outcome.detail or ''}")
        return 0
    kinds = kinds_of(args.kind)
    if args.child_json and args.journal:
        memory_guard(int(args.max_rss_gb * 2**30), args.journal)
    if args.child_json or args.in_process:
        summaries = [run_kind(kind, args.requests, args.seed, args.data, quick=args.quick,
                              start=args.start,
                              examples=args.examples, save_dir=args.save_dir,
                              journal=args.journal, progress=_stderr, watchdog_s=120,
                              records=args.records / f"{kind}.jsonl" if args.records else None)
                     for kind in kinds]
        if args.child_json:
            args.child_json.write_text(json.dumps(summaries[0], default=str))
            return 0
    else:
        summaries = []
        for kind in kinds:
            _stderr(f"-- {kind}: {args.requests} requests")
            summaries.append(run_child(kind, args))
            print(format_summary(summaries[-1]), flush=True)
    if args.in_process:
        for summary in summaries:
            print(format_summary(summary), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"seed": args.seed, "requests": args.requests,
                                         "quick": args.quick, "kinds": summaries},
                                        indent=1, default=str))
    violated = any("crashed" in s or any(s["violations"].values()) for s in summaries)
    return 1 if violated else 0


if __name__ == "__main__":
    raise SystemExit(main())
