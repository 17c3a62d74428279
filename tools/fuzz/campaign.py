"""One kind's campaign: N seeded requests, each valid then mutated, sent, measured and
checked; the invariants; the summary.

Request ``i`` of kind ``K`` under seed ``S`` is drawn from ``random.Random(f"{S}/{K}/{i}")``:
its mutations do not depend on earlier draws, only on the states earlier answers left in the
target's pool, so a seed replays a campaign as long as the functions answer the same.

Invariants, per request: no 5xx (the functions are initialised, so not even 503), no exception
out of the handler (or, for the codec targets, none but the documented refusal: StateError,
InputError), no answer slower than :data:`MAX_SECONDS`, no error answer larger than
:data:`MAX_ERROR_BYTES`, and every error answer the JSON ``{"error", "status"}`` every function
documents. Per run: resident memory flat within :data:`MAX_RSS_GROWTH` over the second half.

"Slower than 5 s" is judged on wall time *and* CPU time (all threads): a request is slow when
both exceed :data:`MAX_SECONDS`. On an idle 2-core machine a CPU-bound request's wall time is
at least half its CPU time, so this misses no request that takes over 5 s of wall time alone
with one thread busy; on a shared, loaded machine, where wall time is inflated by other
processes, it does not blame the function for the wait.
"""

from __future__ import annotations

import base64
import faulthandler
import json
import math
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fuzz.targets import Outcome, Request, Target, make_target, rss_bytes

MAX_SECONDS = 5.0
MAX_ERROR_BYTES = 4096
MAX_RSS_GROWTH = 0.10
INVARIANTS = ("no-5xx", "no-escape", "under-5s", "error-under-4kb", "error-is-json",
              "rss-flat")
# how many mutations a request gets (0: a valid request, which keeps states flowing)
MUTATION_COUNTS = (0, 1, 2, 3)
MUTATION_WEIGHTS = (0.15, 0.45, 0.25, 0.15)


def violations_of(outcome: Outcome) -> list[str]:
    found = []
    if outcome.status is not None and outcome.status >= 500:
        found.append("no-5xx")
    if outcome.escaped is not None:
        found.append("no-escape")
    if outcome.seconds > MAX_SECONDS and outcome.cpu_seconds > MAX_SECONDS:
        found.append("under-5s")
    if outcome.error_bytes > MAX_ERROR_BYTES:
        found.append("error-under-4kb")
    if outcome.problem is not None:
        found.append("error-is-json")
    return found


def draw(target: Target, seed: int | str, index: int) -> Request:
    rng = random.Random(f"{seed}/{target.name}/{index}")
    request = target.valid(rng)
    count = rng.choices(MUTATION_COUNTS, MUTATION_WEIGHTS)[0]
    for _ in range(count):
        request = target.mutate(request, rng)
    if not request.notes:
        request.notes.append("valid")
    return target.transport(request, rng)


def truncated(value: Any, *, max_str: int = 600, max_items: int = 24, depth: int = 0) -> Any:
    """A JSON-safe, bounded copy of a request for the report (strings and lists cut, with
    how long they were)."""
    if depth > 24:
        return f"<nested deeper than {depth}>"
    if isinstance(value, bytes):
        return {"bytes": len(value), "head_b64": base64.b64encode(value[:300]).decode()}
    if isinstance(value, str):
        if len(value) > max_str:
            return value[:max_str] + f"...<{len(value)} characters>"
        return value
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return f"<int of {len(str(abs(value)))} digits>"
    if isinstance(value, float) and math.isnan(value):
        return "<NaN>"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return f"<{value}>"
    if isinstance(value, list):
        items = [truncated(v, max_str=max_str, max_items=max_items, depth=depth + 1)
                 for v in value[:max_items]]
        if len(value) > max_items:
            items.append(f"...<{len(value)} items>")
        return items
    if isinstance(value, dict):
        out = {}
        for k, (key, v) in enumerate(value.items()):
            if k >= max_items:
                out["..."] = f"<{len(value)} keys>"
                break
            out[truncated(str(key), max_str=80)] = truncated(v, max_str=max_str,
                                                              max_items=max_items,
                                                              depth=depth + 1)
        return out
    return value


def _full(request: Request) -> dict[str, Any]:
    """The whole request, for replay (``run.py --replay``)."""
    out: dict[str, Any] = {"body": request.body, "headers": request.headers}
    if isinstance(request.wire, bytes):
        out["wire_b64"] = base64.b64encode(request.wire).decode("ascii")
    elif request.wire is not None:
        out["wire"] = request.wire
    return out


def _signature(invariant: str, outcome: Outcome, request: Request) -> str:
    what = outcome.escaped.split(":")[0] if outcome.escaped else f"status {outcome.status}"
    first = request.notes[0] if request.notes else "valid"
    return f"{invariant}: {what} <- {first[:70]}"


def memory_guard(limit_bytes: int, journal: Path) -> None:
    """End this process (exit status 3) when its RSS passes ``limit_bytes``, so one request
    cannot take a shared machine's memory; the journal names the request."""
    import os
    import threading

    def watch() -> None:
        while True:
            rss = rss_bytes()
            if rss > limit_bytes:
                try:
                    last = json.loads(journal.read_text())
                except (OSError, ValueError):
                    last = {}
                last["memory_guard"] = f"RSS {rss / 2**30:.1f} GiB over {limit_bytes / 2**30:.1f}"
                journal.write_text(json.dumps(last))
                os._exit(3)
            time.sleep(0.05)

    threading.Thread(target=watch, daemon=True, name="fuzz-memory-guard").start()


def code_version() -> dict[str, Any]:
    """The commit under test and the files of shared/ that differ from it (read-only git)."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                              capture_output=True, timeout=10, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "shared"], cwd=root,
                               text=True, capture_output=True, timeout=10, check=False).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": head, "modified": sorted(line[3:] for line in dirty if line.strip())}


def run_kind(kind: str, requests: int, seed: int | str, data_dir: Path, *,
             quick: bool = False, start: int = 0, examples: int = 6, save_dir: Path | None = None,
             journal: Path | None = None, progress: Callable[[str], None] | None = None,
             watchdog_s: float | None = None, records: Path | None = None) -> dict[str, Any]:
    """Run one kind's campaign and return its summary (see :func:`format_summary`);
    ``records``: also write one JSON line per request (status, escape, times, error size,
    RSS, what was mutated)."""
    target = make_target(kind, data_dir, quick=quick)
    load_before = _loadavg()
    started = time.perf_counter()
    target.load()
    load_seconds = time.perf_counter() - started
    # one valid request first, not counted: a model's first call pays one-off costs (lazy
    # initialisation, kernel selection) that are not what the invariants are about
    warm_up = target.call(target.valid(random.Random(f"{seed}/{kind}/warm-up")))
    statuses: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    signatures: dict[str, dict[str, Any]] = {}
    seconds: list[float] = []
    cpu: list[float] = []
    rss: list[int] = []
    error_sizes: list[int] = []
    saved: list[dict[str, Any]] = []
    slowest: list[tuple[float, int, dict[str, Any]]] = []
    generator_errors = 0
    lines = None
    if records is not None:
        records.parent.mkdir(parents=True, exist_ok=True)
        lines = records.open("w")
    try:
        for index in range(start, requests):
            try:
                request = draw(target, seed, index)
            except Exception:  # a bug of the fuzzer itself: counted, shown once, skipped
                generator_errors += 1
                if generator_errors == 1 and progress is not None:
                    import traceback
                    progress(f"{kind}: the generator failed on request {index}:\n"
                             f"{traceback.format_exc()}")
                continue
            if journal is not None:
                journal.write_text(json.dumps({"kind": kind, "index": index,
                                               "notes": request.notes}))
            if watchdog_s:
                faulthandler.dump_traceback_later(watchdog_s, exit=False)
            outcome = target.call(request)
            if watchdog_s:
                faulthandler.cancel_dump_traceback_later()
            target.observe(request, outcome)
            outcome.payload = None
            seconds.append(outcome.seconds)
            cpu.append(outcome.cpu_seconds)
            error_sizes.append(outcome.error_bytes)
            statuses["escaped" if outcome.escaped else str(outcome.status)] += 1
            record = {"index": index, "status": outcome.status, "escaped": outcome.escaped,
                      "seconds": round(outcome.seconds, 3),
                      "cpu_seconds": round(outcome.cpu_seconds, 3),
                      "error_bytes": outcome.error_bytes, "error": outcome.message,
                      "notes": request.notes}
            slowest.append((outcome.seconds, index, record))
            slowest = sorted(slowest, key=lambda item: -item[0])[:5]
            for invariant in violations_of(outcome):
                counts[invariant] += 1
                signature = _signature(invariant, outcome, request)
                entry = signatures.setdefault(signature, {"signature": signature, "count": 0,
                                                          "first_index": index})
                entry["count"] += 1
                fresh = entry["count"] == 1
                if len(saved) < examples and (fresh or len(saved) < examples // 2):
                    saved.append(dict(record, invariant=invariant, problem=outcome.problem,
                                      detail=outcome.detail, request=truncated(_full(request))))
                if save_dir is not None and entry["count"] <= 3:  # a few of every kind
                    save_dir.mkdir(parents=True, exist_ok=True)
                    path = save_dir / f"{kind}-{index}-{invariant}.json"
                    path.write_text(json.dumps({"kind": kind, "seed": seed, "index": index,
                                                "quick": quick, "notes": request.notes,
                                                **_full(request)}))
            request = None  # RSS without the fuzzer's own copy of the request
            rss.append(held_bytes())
            if lines is not None:
                lines.write(json.dumps(dict(record, rss_mb=round(rss[-1] / 2**20, 1)),
                                       default=str) + "\n")
            if progress is not None and (index + 1) % max(1, requests // 20) == 0:
                progress(f"{kind}: {index + 1}/{requests} requests, "
                         f"{dict(statuses)}, violations {dict(counts)}")
    finally:
        target.close()
        if lines is not None:
            lines.close()
    summary = _summarise(kind, requests, seed, quick, load_seconds, statuses, counts,
                         signatures, seconds, cpu, rss, error_sizes, saved, slowest)
    summary["generator_errors"] = generator_errors
    summary["start"] = start
    summary["code"] = code_version()
    summary["loadavg"] = {"before": load_before, "after": _loadavg()}
    summary["warm_up"] = {"status": warm_up.status, "seconds": round(warm_up.seconds, 3),
                          "cpu_seconds": round(warm_up.cpu_seconds, 3)}
    return summary


def rss_growth(rss: list[int]) -> dict[str, float]:
    """Median RSS over a window at the start of the second half and over the last window
    (a twentieth of the run, at least 5 requests), and the relative growth between them."""
    n = len(rss)
    if n < 4:
        return {"mid_mb": 0.0, "end_mb": 0.0, "growth": 0.0}
    window = max(5, n // 20)
    half = n // 2
    mid = statistics.median(rss[half: half + window])
    end = statistics.median(rss[max(half, n - window):])
    return {"mid_mb": mid / 2**20, "end_mb": end / 2**20, "growth": end / mid - 1}


def _summarise(kind, requests, seed, quick, load_seconds, statuses, counts, signatures,
               seconds, cpu, rss, error_sizes, saved, slowest) -> dict[str, Any]:
    growth = rss_growth(rss)
    if growth["growth"] > MAX_RSS_GROWTH:
        counts["rss-flat"] += 1
    half = len(rss) // 2
    return {
        "kind": kind, "requests": requests, "seed": seed, "quick": quick,
        "load_seconds": round(load_seconds, 2),
        "statuses": dict(sorted(statuses.items())),
        "seconds": {"max": round(max(seconds, default=0), 3),
                    "median": round(statistics.median(seconds), 4) if seconds else 0,
                    "total": round(sum(seconds), 1)},
        "cpu_seconds_max": round(max(cpu, default=0), 3),
        "max_error_bytes": max(error_sizes, default=0),
        "rss_mb": {"first_half_start": round(rss[0] / 2**20, 1) if rss else 0,
                   "first_half_max": round(max(rss[:half], default=0) / 2**20, 1),
                   "second_half_mid": round(growth["mid_mb"], 1),
                   "second_half_end": round(growth["end_mb"], 1),
                   "second_half_max": round(max(rss[half:], default=0) / 2**20, 1),
                   "second_half_growth": round(growth["growth"], 4)},
        "rss_series_mb": [round(rss[i] / 2**20, 1)
                          for i in range(0, len(rss), max(1, len(rss) // 50))],
        "violations": {name: counts.get(name, 0) for name in INVARIANTS},
        "signatures": sorted(signatures.values(), key=lambda s: -s["count"]),
        "slowest": [record for _, _, record in slowest],
        "examples": saved,
    }


def format_summary(summary: dict[str, Any], *, details: bool = True) -> str:
    """The summary as text, for stdout."""
    lines = []
    s = summary
    if "crashed" in s:
        return (f"== {s['kind']}: CRASHED ({s['crashed']}) at request {s.get('index')} "
                f"{s.get('notes')} {s.get('memory_guard') or ''}\n"
                f"{s.get('stderr_tail', '')[-1500:]}")
    warm = s.get("warm_up") or {}
    span = f"requests {s['start']}-{s['requests'] - 1}" if s.get("start") else \
        f"{s['requests']} requests"
    lines.append(f"== {s['kind']}: {span}, seed {s['seed']}"
                 f"{' (quick)' if s['quick'] else ''}, loaded in {s['load_seconds']} s, "
                 f"warm-up request {warm.get('status')} in {warm.get('seconds')} s")
    lines.append(f"   statuses: {s['statuses']}")
    load = s.get("loadavg") or {}
    lines.append(f"   time: max {s['seconds']['max']} s (cpu max {s['cpu_seconds_max']} s), "
                 f"median {s['seconds']['median']} s, total {s['seconds']['total']} s; "
                 f"max error body {s['max_error_bytes']} B; load average {load.get('before')}"
                 f" -> {load.get('after')}")
    r = s["rss_mb"]
    lines.append(f"   RSS MB: first half {r['first_half_start']} -> max {r['first_half_max']}; "
                 f"second half {r['second_half_mid']} -> {r['second_half_end']} "
                 f"(max {r['second_half_max']}, growth {100 * r['second_half_growth']:.1f}%)")
    bad = {k: v for k, v in s["violations"].items() if v}
    lines.append(f"   violations: {bad or 'none'}"
                 + (f"; fuzzer errors: {s['generator_errors']}" if s.get("generator_errors")
                    else ""))
    if details:
        for sig in s["signatures"][:12]:
            lines.append(f"     {sig['count']:5d} x {sig['signature']} "
                         f"(first: request {sig['first_index']})")
        for example in s["examples"]:
            lines.append(f"   example {example['invariant']} request {example['index']}: "
                         f"status {example['status']} escaped {example['escaped']} "
                         f"{example['seconds']} s (cpu {example['cpu_seconds']} s) error "
                         f"{example['error_bytes']} B; {'; '.join(example['notes'])[:300]}")
        for record in s["slowest"][:3]:
            lines.append(f"   slow: request {record['index']} {record['seconds']} s "
                         f"(cpu {record['cpu_seconds']} s) status {record['status']}: "
                         f"{'; '.join(record['notes'])[:200]}")
    return "\n".join(lines)


def replay(path: Path, data_dir: Path) -> Outcome:
    """Send one saved request (``--save-dir``) to a freshly loaded function again."""
    saved = json.loads(Path(path).read_text())
    target = make_target(saved["kind"], data_dir, quick=saved.get("quick", False))
    target.load()
    try:
        wire = saved.get("wire")
        if "wire_b64" in saved:
            wire = base64.b64decode(saved["wire_b64"])
        request = Request(saved["body"], list(saved.get("notes", [])), saved.get("headers"),
                          wire)
        return target.call(request)
    finally:
        target.close()


def held_bytes() -> int:
    """RSS after glibc has handed freed heap pages back (``malloc_trim``): what the process
    holds, not what its allocator keeps cached after one large request. Without the trim the
    fuzzer's own 100 000-item lists left steps of 30 MB in the prompt reader's RSS."""
    global _TRIM
    if _TRIM is None:
        import ctypes
        import ctypes.util

        try:
            _TRIM = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):  # not glibc
            _TRIM = False
    if _TRIM:
        _TRIM(0)
    return rss_bytes()


_TRIM: Any = None


def _loadavg() -> float | None:
    """The machine's 1-minute load average: timings mean little when other work shares it."""
    import os

    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
