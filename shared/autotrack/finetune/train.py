"""The training step of the fine-tuning loop: ultralytics on an exported dataset, resumable.

The base is what a round starts from (:func:`resolve_base`): an official checkpoint
(``yolo11n.pt``, found in AUTOTRACK_MODELS or ultralytics' weights folder; offline and missing,
one line saying where to put it and where it comes from), a ``.yaml`` config (random weights:
training from scratch), or a round ``autotrack finetune`` published (``street-r1``, or the
family name ``street`` for its newest round), checked against its entry's sha256.

ultralytics writes the run into ``TRAIN_DIR`` (``weights/last.pt`` after every epoch,
``weights/best.pt``, ``results.csv``, ``results.png``). An interrupted run resumes from
``last.pt`` with ultralytics' own ``resume`` (optimizer, EMA, epoch counter), so an epoch
already finished is never trained twice. ultralytics is AGPL-3.0 and imported only here, inside
the functions, never at module level.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotrack.errors import InputError, ModelNotFoundError
from autotrack.models import downloads_allowed, find_spec, model_dirs, resolve_model, sha256_of

DEFAULT_BASE = "yolo11n.pt"
_CONFIG_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class TrainOptions:
    epochs: int = 50
    imgsz: int = 640
    batch: int = 16
    device: str | None = None
    workers: int = 2
    patience: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise InputError(f"--epochs must be at least 1, got {self.epochs}")
        if self.imgsz < 32 or self.imgsz % 32:
            raise InputError(f"--imgsz must be a multiple of 32 (the model's stride), at least "
                             f"32, got {self.imgsz}")
        if self.batch < 1:
            raise InputError(f"--batch must be at least 1, got {self.batch}")
        if self.workers < 0:
            raise InputError(f"--workers must be 0 or more, got {self.workers}")
        if self.patience < 1:
            raise InputError(f"--patience must be at least 1 epoch, got {self.patience}")


@dataclass(frozen=True)
class Base:
    """What a round starts from."""

    text: str  # as the user gave it
    source: str  # what ultralytics loads: a file, or a config name
    kind: str  # "checkpoint", "config" (from scratch) or "round" (a published round)
    round_name: str | None = None  # "street-r1" for a published round

    def describe(self) -> dict[str, Any]:
        about: dict[str, Any] = {"model": self.text, "kind": self.kind, "source": self.source}
        if self.round_name:
            about["round"] = self.round_name
        if self.kind != "config" and Path(self.source).is_file():
            about["sha256"] = sha256_of(self.source)
        return about


def resolve_base(text: str) -> Base:
    """The base of ``--base`` (module docstring); ModelNotFoundError (one line) when it cannot
    be had."""
    spec = find_spec(text)
    if spec is not None and spec.published:
        return Base(text, str(resolve_model(text)), "round", spec.name)
    if spec is not None:
        raise ModelNotFoundError(f"--base {text}: {spec.name} is not an ultralytics model; "
                                 f"fine-tuning starts from an ultralytics checkpoint (such as "
                                 f"{DEFAULT_BASE}), a .yaml config, or a published round")
    if text.lower().endswith(_CONFIG_SUFFIXES):
        return Base(text, text, "config")
    from autotrack.detectors.ultralytics import locate

    try:
        source = locate(text)
    except ModelNotFoundError as exc:
        raise ModelNotFoundError(f"--base {text}: {exc}; put {Path(text).name} into "
                                 f"{model_dirs()[0]}, or start from scratch with --base "
                                 "yolo11n.yaml") from None
    return Base(text, source, "checkpoint")


@dataclass
class TrainResult:
    folder: Path
    best: Path
    last: Path
    epochs: int  # epochs trained in all (an interrupted and resumed run counts each once)
    seconds: float  # this call's training time
    curves: Path | None  # results.png
    results_csv: Path | None
    metrics: dict[str, float] = field(default_factory=dict)


def checkpoint_epoch(path: Path) -> int | None:
    """Epochs a ``last.pt`` has finished (its 0-based ``epoch`` + 1); None for a finished
    run's stripped checkpoint. InputError when it cannot be read."""
    import torch

    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=False)
        epoch = int(ckpt.get("epoch", -1))
    except Exception as exc:
        raise InputError(f"{path} cannot be read ({_one_line(exc)}): the run was probably "
                         f"stopped while saving it; remove {path.parent.parent} to train this "
                         "round from the start") from None
    return None if epoch < 0 else epoch + 1


def train(data_yaml: Path, base: Base, folder: Path, options: TrainOptions, *,
          resume: bool = False, quiet: bool = False,
          on_epoch: Callable[[int, int, Mapping[str, float]], None] | None = None,
          callbacks: Mapping[str, Callable[[Any], None]] | None = None) -> TrainResult:
    """Train (or, with ``resume`` and a ``last.pt`` in ``folder``, continue) a round.

    ``on_epoch(epoch, epochs, metrics)`` is called after every finished epoch; ``callbacks``
    are more ultralytics callbacks by event name (the tests interrupt a run with one). An
    OSError (a full disk) becomes one line saying that --resume continues from the last saved
    epoch.
    """
    folder = folder.absolute()
    last = folder / "weights" / "last.pt"
    resuming = resume and last.is_file()
    if resuming:
        done = checkpoint_epoch(last)
        if done is None:
            raise InputError(f"{last} is a finished run's checkpoint: nothing to resume")
    model = _load(str(last) if resuming else base.source, base)
    reported: set[int] = set()

    def epoch_end(trainer: Any) -> None:
        epoch = int(trainer.epoch) + 1
        if epoch in reported or epoch > int(trainer.epochs):  # final_eval calls it again
            return
        reported.add(epoch)
        if on_epoch is not None:
            on_epoch(epoch, int(trainer.epochs), _metrics(trainer))

    model.add_callback("on_fit_epoch_end", epoch_end)
    for event, callback in (callbacks or {}).items():
        model.add_callback(event, callback)
    arguments: dict[str, Any] = dict(device=options.device or "cpu", workers=options.workers,
                                     verbose=not quiet)
    if resuming:
        arguments.update(resume=str(last))
    else:
        arguments.update(data=str(data_yaml), epochs=options.epochs, imgsz=options.imgsz,
                         batch=options.batch, patience=options.patience, seed=options.seed,
                         project=str(folder.parent), name=folder.name, exist_ok=True,
                         plots=True, amp=False, deterministic=True)
    started = time.perf_counter()
    with _quiet_logger(quiet):
        try:
            model.train(**arguments)
        except OSError as exc:
            raise InputError(f"training stopped: cannot write in {folder}: "
                             f"{exc.strerror or _one_line(exc)}; free space and continue from "
                             "the last saved epoch with --resume") from None
    seconds = time.perf_counter() - started
    trainer = getattr(model, "trainer", None)
    save_dir = Path(getattr(trainer, "save_dir", folder))
    best = save_dir / "weights" / "best.pt"
    if not best.is_file():
        raise InputError(f"training ended without {best}")
    curves = save_dir / "results.png"
    csv = save_dir / "results.csv"
    return TrainResult(save_dir, best, save_dir / "weights" / "last.pt",
                       int(getattr(trainer, "epoch", options.epochs - 1)) + 1, seconds,
                       curves if curves.is_file() else None, csv if csv.is_file() else None,
                       _metrics(trainer) if trainer is not None else {})


def _load(source: str, base: Base) -> Any:
    if not downloads_allowed():
        os.environ.setdefault("YOLO_OFFLINE", "1")  # no font, asset or telemetry requests
    try:
        from ultralytics import YOLO
    except ImportError:
        from autotrack.detectors.ultralytics import INSTALL_HINT

        raise ModelNotFoundError("autotrack finetune trains with the optional ultralytics "
                                 f"package (AGPL-3.0): {INSTALL_HINT}") from None
    try:
        return YOLO(source)
    except Exception as exc:  # ultralytics raises anything from FileNotFoundError to KeyError
        raise ModelNotFoundError(f"ultralytics cannot load {base.text} ({source}): "
                                 f"{_one_line(exc)}") from None


def _metrics(trainer: Any) -> dict[str, float]:
    out = {}
    for key, value in (getattr(trainer, "metrics", None) or {}).items():
        try:
            out[str(key)] = float(value)
        except (TypeError, ValueError):
            continue
    loss = getattr(trainer, "tloss", None)  # a dict of loss items (8.4), a tensor before
    try:
        if isinstance(loss, Mapping):
            out["train/loss"] = float(sum(float(v) for v in loss.values()))
        elif loss is not None:
            out["train/loss"] = float(loss.sum())
    except Exception:  # the progress line then has no loss
        pass
    return out


class _quiet_logger:
    """ultralytics' own log lowered to warnings while ``quiet``."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.logger = logging.getLogger("ultralytics")
        self.level = self.logger.level

    def __enter__(self) -> None:
        if self.quiet:
            self.logger.setLevel(logging.WARNING)

    def __exit__(self, *exc: object) -> None:
        self.logger.setLevel(self.level)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__
