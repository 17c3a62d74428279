"""``autotrack finetune``: export → train → judge → publish → redeploy → re-annotate.

One command closes the loop; each step is a module of its own and writes into the round's run
folder ``RUNS/NAME-rN`` (``-o``, default ``finetune-runs``):

``dataset/``
    the Ultralytics dataset, written by the existing doors: ``autotrack task export`` (``--task``,
    a CVAT server), ``autotrack export`` (``--annotations`` and ``--video``, no server), or an
    existing one (``--dataset DIR``);
``train/``
    ultralytics' run (:mod:`autotrack.finetune.train`): ``weights/last.pt`` after each epoch,
    ``best.pt``, ``results.csv``, ``results.png``;
``report.md``, ``judge.json``, ``curves.png``
    base and new model on the val split (:mod:`autotrack.finetune.judge`);
``nuclio/``
    the staged Nuclio function, with ``--deploy nuclio`` (:mod:`autotrack.finetune.redeploy`);
``run.json``
    what the round was asked to do and which steps are done, with their times.

The round is published (:mod:`autotrack.finetune.publish`) as ``NAME-rN`` in the models folder,
unless it is worse than its base and ``--force`` is not given. Then ``--deploy`` and
``--reannotate TASK`` (``autotrack task annotate TASK --replace --detector NAME-rN``: only this
tool's own unedited tracks are replaced, after a backup).

Run the same command with ``--resume`` after an interruption (Ctrl-C, a full disk, a refusal):
the steps already done are kept, training continues from the last saved epoch. Nothing here
writes to a task except the re-annotate step.

The server doors are reached through ``run_command`` (an ``autotrack ...`` command line, run
by :mod:`autotrack.cli`), so this package imports no CVAT door.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from autotrack.errors import InputError
from autotrack.finetune import judge as judging
from autotrack.finetune import publish as publishing
from autotrack.finetune import redeploy
from autotrack.finetune import train as training
from autotrack.finetune.dataset import add_dataset_arguments
from autotrack.models import model_dirs

DEFAULT_RUNS = "finetune-runs"
RUN_FILE = "run.json"
DATASET_OPTIONS = ("classes", "stride", "duplicate_px", "val", "block", "guard", "seed")
SERVER_OPTIONS = (("server_host", "--server-host"), ("server_port", "--server-port"),
                  ("auth", "--auth"), ("org", "--org"))


@dataclass
class Doors:
    """What :mod:`autotrack.cli` lends this command: ``run_command(argv)`` runs an
    ``autotrack`` command line (the dataset doors, ``task annotate``), ``deploy_nuclio(argv)``
    runs ``python -m autotrack.cvat.deploy.nuclio``."""

    run_command: Callable[[list[str]], int]
    deploy_nuclio: Callable[[list[str]], int]


def add_finetune_parser(commands: Any) -> argparse.ArgumentParser:
    """``autotrack finetune`` on the top-level subparsers (the server options are added by
    the caller, from the task door)."""
    parser = commands.add_parser(
        "finetune", conflict_handler="resolve",
        help="reviewed annotations -> a fine-tuned detector, published, deployed, re-run",
        description="Export the reviewed frames as a dataset, fine-tune an ultralytics "
                    "detector on them, judge it against its base on the val split, publish "
                    "it as NAME-rN (a round) in the models folder, redeploy it, and "
                    "re-annotate tasks with it. --resume continues an interrupted round.")
    source = parser.add_argument_group("where the reviewed boxes come from (one door)")
    source.add_argument("--task", dest="tasks", action="append", type=int, default=[],
                        metavar="TASK_ID", help="a CVAT task (repeatable; its jobs in --states)")
    source.add_argument("--project", dest="projects", action="append", type=int, default=[],
                        metavar="PROJECT_ID", help="every task of a CVAT project (repeatable)")
    source.add_argument("--states", default="completed",
                        help="job states that count as reviewed (default completed)")
    source.add_argument("--stages", help="job stages that count as reviewed (default any)")
    source.add_argument("--annotations", metavar="XML",
                        help="offline: CVAT for video 1.1 XML (with --video; no server)")
    source.add_argument("--video", metavar="VIDEO", help="offline: the video the XML annotates")
    source.add_argument("--dataset", metavar="DIR",
                        help="a dataset 'autotrack export' or 'autotrack task export' wrote")
    add_dataset_arguments(parser)  # its -o is replaced below
    parser.add_argument("-o", "--runs", "--output", dest="runs", default=DEFAULT_RUNS,
                        metavar="DIR",
                        help=f"where run folders go: DIR/NAME-rN (default ./{DEFAULT_RUNS})")
    model = parser.add_argument_group("training")
    model.add_argument("--name", required=True,
                       help="the model family: rounds are published as NAME-r1, NAME-r2, ...")
    model.add_argument("--base", default=training.DEFAULT_BASE,
                       help=f"what to start from: an ultralytics checkpoint (default "
                            f"{training.DEFAULT_BASE}), a .yaml config (from scratch), or a "
                            "published round (NAME-rN, or NAME for its newest)")
    defaults = training.TrainOptions()
    model.add_argument("--epochs", type=int, default=defaults.epochs,
                       help=f"default {defaults.epochs}")
    model.add_argument("--imgsz", type=int, default=defaults.imgsz,
                       help=f"training image size, a multiple of 32 (default {defaults.imgsz})")
    model.add_argument("--batch", type=int, default=defaults.batch,
                       help=f"default {defaults.batch}")
    model.add_argument("--device", help="cpu (default), 0, cuda:0, mps, ...")
    model.add_argument("--workers", type=int, default=defaults.workers,
                       help=f"data loader processes (default {defaults.workers})")
    model.add_argument("--patience", type=int, default=defaults.patience,
                       help="stop after this many epochs without a better val score "
                            f"(default {defaults.patience})")
    model.add_argument("--resume", action="store_true",
                       help="continue this round's run folder where it stopped")
    publish = parser.add_argument_group("judging and publishing")
    publish.add_argument("--force", action="store_true",
                         help="publish even a model that scores below its base")
    publish.add_argument("--models", metavar="DIR",
                         help="the models folder to publish into (default: the first "
                              "AUTOTRACK_MODELS folder)")
    publish.add_argument("--no-onnx", action="store_true", help="publish the .pt only")
    after = parser.add_argument_group("after publishing")
    after.add_argument("--deploy", choices=("nuclio", "agent"),
                       help="nuclio: the fine-tuned Nuclio function (deployed once per "
                            "family; later rounds are swapped in from the models folder); "
                            "agent: print the cvat-cli function lines")
    after.add_argument("--gpu", action="store_true", help="--deploy nuclio: function-gpu.yaml")
    after.add_argument("--nuctl", default=os.environ.get("NUCTL", "nuctl"),
                       help="nuctl executable (default $NUCTL or nuctl)")
    after.add_argument("--dry-run", action="store_true",
                       help="print the deploy commands instead of running them; re-annotate "
                            "without writing")
    after.add_argument("--reannotate", dest="reannotate", action="append", type=int,
                       default=[], metavar="TASK_ID",
                       help="then run 'autotrack task annotate TASK_ID --replace' with the new "
                            "model (repeatable)")
    after.add_argument("--reannotate-job", action="append", type=int, default=[],
                       metavar="JOB_ID", help="the same for one job (repeatable)")
    after.add_argument("--label-map", metavar="CLASS=LABEL,...",
                       help="re-annotate: task labels for classes whose names differ")
    return parser


# --- the run folder --------------------------------------------------------------------------

@dataclass
class Round:
    family: str
    number: int
    folder: Path
    state: dict[str, Any]
    created: bool = False  # this call made the run folder

    @property
    def name(self) -> str:
        return f"{self.family}-r{self.number}"

    def save(self) -> None:
        try:
            publishing.write_atomic(self.folder / RUN_FILE,
                                    (json.dumps(self.state, indent=1) + "\n").encode())
        except OSError as exc:
            raise InputError(f"cannot write {self.folder / RUN_FILE}: "
                             f"{exc.strerror or exc}") from None

    def done(self, step: str) -> bool:
        return bool(self.state.get("steps", {}).get(step, {}).get("done"))

    def mark(self, step: str, seconds: float, **about: Any) -> None:
        self.state.setdefault("steps", {})[step] = {"done": True, "seconds": round(seconds, 2),
                                                    **about}
        self.save()


def open_round(args: argparse.Namespace, family: str, models: Path, out: TextIO) -> Round:
    """The round's run folder: a new one, or with --resume the unfinished one."""
    runs = Path(args.runs)
    number = publishing.next_round(family, models)
    folder = runs / f"{family}-r{number}"
    if folder.exists() and not args.resume:
        state = _read_state(folder)
        steps = ", ".join(s for s in ("dataset", "train", "judge") if
                          state.get("steps", {}).get(s, {}).get("done")) or "none"
        raise InputError(f"{folder} holds an unfinished round (steps done: {steps}); add "
                         "--resume to continue it (with --force to publish a model the judge "
                         "refused), or remove the folder to start the round over")
    if not folder.exists():
        if args.resume:
            raise InputError(f"nothing to resume: {folder} does not exist (the next round of "
                             f"{family} is r{number})")
        try:
            folder.mkdir(parents=True)
        except OSError as exc:
            raise InputError(f"cannot create {folder}: {exc.strerror or exc}") from None
        state = {"name": f"{family}-r{number}", "family": family, "round": number,
                 "base": args.base, "models": str(models.resolve()),
                 "options": asdict(_train_options(args)), "steps": {}}
        current = Round(family, number, folder, state, created=True)
        current.save()
        print(f"round {current.name}: run folder {folder}", file=out)
        return current
    state = _read_state(folder)
    print(f"round {family}-r{number}: resuming {folder}", file=out)
    return Round(family, number, folder, state)


def forget_empty_round(current: Round) -> None:
    """Remove the run folder this call made when it holds nothing but ``run.json``: a round
    that failed before any step wrote anything (no reviewed frames, a missing base, an
    unreadable frame) leaves nothing behind, so the same command, corrected, runs again
    without --resume (which would keep the options of the failed call)."""
    if not current.created:
        return
    try:
        if {p.name for p in current.folder.iterdir()} <= {RUN_FILE}:
            shutil.rmtree(current.folder)
    except OSError:
        pass


def _read_state(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise InputError(f"{folder} is not a run folder of autotrack finetune (no readable "
                         f"{RUN_FILE}); remove it or choose another -o") from None


def _train_options(args: argparse.Namespace) -> training.TrainOptions:
    return training.TrainOptions(epochs=args.epochs, imgsz=args.imgsz, batch=args.batch,
                                 device=args.device, workers=args.workers,
                                 patience=args.patience, seed=args.seed)


# --- the steps -------------------------------------------------------------------------------

def _server_argv(args: argparse.Namespace, *, backup: bool = True) -> list[str]:
    argv = []
    for dest, option in SERVER_OPTIONS:
        value = getattr(args, dest, None)
        if value is not None:
            argv += [option, str(value)]
    if getattr(args, "insecure", False):
        argv.append("--insecure")
    if backup and getattr(args, "backup_dir", None):
        argv += ["--backup-dir", str(args.backup_dir)]
    return argv


def _shown(argv: Sequence[str]) -> str:
    """A command line as printed: a password in --auth USER:PASS hidden."""
    shown = list(argv)
    for i, item in enumerate(shown[:-1]):
        if item == "--auth" and ":" in shown[i + 1]:
            shown[i + 1] = shown[i + 1].split(":", 1)[0] + ":***"
    return "autotrack " + shlex.join(shown)


def _dataset_argv(args: argparse.Namespace) -> list[str]:
    argv = []
    for dest in DATASET_OPTIONS:
        value = getattr(args, dest, None)
        if value is not None:
            argv += ["--" + dest.replace("_", "-"), str(value)]
    return argv + (["-q"] if args.quiet else [])


def _door(args: argparse.Namespace) -> str:
    doors = [name for name, given in (
        ("task", bool(args.tasks or args.projects)),
        ("offline", bool(args.annotations or args.video)),
        ("dataset", bool(args.dataset))) if given]
    if len(doors) != 1:
        raise InputError("give one source of reviewed boxes: --task ID (or --project ID), "
                         "--annotations XML --video VIDEO, or --dataset DIR"
                         + (f" (got {' and '.join(doors)})" if doors else ""))
    if doors[0] == "offline" and not (args.annotations and args.video):
        raise InputError("the offline door needs both --annotations XML and --video VIDEO")
    return doors[0]


def make_dataset(args: argparse.Namespace, current: Round, doors: Doors, out: TextIO) -> Path:
    """The round's dataset: exported into ``dataset/`` (atomically, by the door), or the
    ``--dataset`` given."""
    door = _door(args)
    if door == "dataset":
        dataset = Path(args.dataset).resolve()
        judging.read_manifest(dataset)  # one line when it is not a dataset
        current.state["dataset"] = str(dataset)
        return dataset
    dataset = (current.folder / "dataset").resolve()
    if current.done("dataset") and dataset.is_dir():
        return dataset
    if dataset.exists():  # a dataset is renamed into place whole: this one is complete
        current.mark("dataset", 0.0, path=str(dataset))
        return dataset
    if door == "offline":
        argv = ["export", "--annotations", args.annotations, "--video", args.video,
                "-o", str(dataset), *_dataset_argv(args)]
    else:
        argv = ["task", "export", *[a for t in args.tasks for a in ("--task", str(t))],
                *[a for p in args.projects for a in ("--project", str(p))],
                "--states", args.states, *(["--stages", args.stages] if args.stages else []),
                "-o", str(dataset), *_dataset_argv(args), *_server_argv(args, backup=False)]
    print(f"dataset: {_shown(argv)}", file=out)
    started = time.perf_counter()
    status = doors.run_command(argv)
    if status != 0 or not dataset.is_dir():
        raise InputError(f"the dataset step failed (status {status}); nothing was trained")
    current.mark("dataset", time.perf_counter() - started, path=str(dataset))
    return dataset


def train_round(args: argparse.Namespace, current: Round, dataset: Path,
                base: training.Base, out: TextIO, err: TextIO) -> training.TrainResult:
    options = training.TrainOptions(**{**current.state["options"], "device": args.device,
                                       "workers": args.workers})
    folder = current.folder / "train"
    last = folder / "weights" / "last.pt"
    if current.done("train"):
        best = Path(current.state["steps"]["train"]["best"])
        curves = folder / "results.png"
        return training.TrainResult(folder, best, last, current.state["steps"]["train"]
                                    ["epochs"], 0.0, curves if curves.is_file() else None,
                                    None)
    if last.is_file() and not args.resume:
        raise InputError(f"{folder} holds an interrupted training; add --resume")

    def progress(epoch: int, epochs: int, metrics: dict[str, float]) -> None:
        map50 = metrics.get("metrics/mAP50(B)")
        map5095 = metrics.get("metrics/mAP50-95(B)")
        scores = (f", val mAP50 {map50:.3f}, mAP50-95 {map5095:.3f}"
                  if map50 is not None and map5095 is not None else "")
        loss = metrics.get("train/loss")
        print(f"{current.name}: epoch {epoch}/{epochs} saved"
              + (f", train loss {loss:.3f}" if loss is not None else "") + scores,
              file=err, flush=True)

    resuming = last.is_file()
    print(f"train: {'resuming ' if resuming else ''}{base.text} on {dataset / 'data.yaml'}, "
          f"{options.epochs} epochs at imgsz {options.imgsz}, device {options.device or 'cpu'}",
          file=out, flush=True)
    started = time.perf_counter()
    try:
        result = training.train(dataset / "data.yaml", base, folder, options, resume=resuming,
                                quiet=args.quiet, on_epoch=progress)
    except KeyboardInterrupt:
        saved = training.checkpoint_epoch(last) if last.is_file() else 0
        raise Interrupted(f"interrupted: {current.name} has {saved or 0} of {options.epochs} "
                          f"epochs saved in {last}; run the same command with --resume to "
                          "continue") from None
    current.mark("train", time.perf_counter() - started, best=str(result.best),
                 epochs=result.epochs, resumed=resuming)
    return result


class Interrupted(Exception):
    """Ctrl-C during training: the message says how to resume."""


def judge_round(args: argparse.Namespace, current: Round, dataset: Path, base: training.Base,
                result: training.TrainResult, out: TextIO) -> dict[str, Any]:
    path = current.folder / "judge.json"
    if current.done("judge") and path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    from autotrack.detectors.ultralytics import UltralyticsDetector

    imgsz = int(current.state["options"]["imgsz"])
    started = time.perf_counter()
    val = judging.load_val(dataset)
    device = args.device
    base_scores = judging.evaluate(
        UltralyticsDetector(base.source, min_score=judging.MIN_SCORE, imgsz=imgsz,
                            device=device), val, base.text)
    new_scores = judging.evaluate(
        UltralyticsDetector(str(result.best), min_score=judging.MIN_SCORE, imgsz=imgsz,
                            device=device), val, current.name)
    verdict = judging.judge(base_scores, new_scores)
    curves = None
    try:
        if result.curves is not None:
            curves = current.folder / "curves.png"
            shutil.copyfile(result.curves, current.folder / ".curves.png.partial")
            os.replace(current.folder / ".curves.png.partial", curves)
        report = judging.report_markdown(
            f"{current.name}: fine-tuned from {base.text}", base_scores, new_scores, verdict,
            split=val.split, curves=curves.name if curves else None,
            about={"dataset": f"`{dataset}`", "epochs": result.epochs, "image size": imgsz,
                   "training weights": f"`{result.best}`"})
        record = judging.scores_json(base_scores, new_scores, verdict, val.split)
        publishing.write_atomic(current.folder / "report.md", report.encode("utf-8"))
        publishing.write_atomic(path, (json.dumps(record, indent=1) + "\n").encode("utf-8"))
    except OSError as exc:
        raise InputError(f"cannot write the report in {current.folder}: "
                         f"{exc.strerror or exc}; --resume writes it again") from None
    current.mark("judge", time.perf_counter() - started, worse=verdict.worse)
    print(f"judge: {verdict.text}; report {current.folder / 'report.md'}", file=out)
    return record


def publish_round(args: argparse.Namespace, current: Round, dataset: Path,
                  base: training.Base, result: training.TrainResult, record: dict[str, Any],
                  models: Path, out: TextIO) -> Path:
    if current.done("publish"):
        return Path(current.state["steps"]["publish"]["entry"])
    verdict = record["verdict"]
    if verdict["worse"] and not args.force:
        raise InputError(f"{current.name} is not published: {verdict['text']} (report: "
                         f"{current.folder / 'report.md'}); run the same command with "
                         "--resume --force to publish it anyway")
    started = time.perf_counter()
    imgsz = int(current.state["options"]["imgsz"])
    onnx = None if args.no_onnx else publishing.export_onnx(result.best, imgsz)
    manifest = judging.read_manifest(dataset)
    entry = {
        "classes": list(manifest["names"]), "imgsz": imgsz,
        "license": publishing.LICENSE.format(base=base.text),
        "source": f"autotrack finetune round {current.number} of {current.family}, from "
                  f"{base.text}, on {dataset}",
        "base": base.describe(), "dataset": {"path": str(dataset),
                                             "frames": manifest.get("split", {}).get("frames")},
        "epochs": result.epochs, "scores": {"split": record["split"],
                                            "new": record["verdict"]["new"],
                                            "base": record["verdict"]["base"],
                                            "per_class": record["new"]["per_class"]},
        "verdict": verdict["text"], "forced": bool(verdict["worse"]),
        "run": str(current.folder.resolve())}
    path = publishing.publish(current.name, result.best, onnx, models, entry)
    current.mark("publish", time.perf_counter() - started, entry=str(path))
    print(f"published {current.name} in {models}: {current.name}.pt"
          f"{'' if onnx is None else f', {current.name}.onnx'}, {path.name}", file=out)
    return path


def deploy_round(args: argparse.Namespace, current: Round, names: list[str], models: Path,
                 doors: Doors, out: TextIO) -> int:
    if args.deploy == "agent":
        print("serve it from an agent (CVAT Online or Enterprise):", file=out)
        for line in redeploy.agent_lines(current.name, models, _server_argv_cli(args),
                                         args.device):
            print(f"  {line}", file=out)
        return 0
    staged = redeploy.stage_function(current.folder / "nuclio", current.family, names, models,
                                     gpu=args.gpu)
    deploy_argv = ["--function-dir", str(staged), "--gpu" if args.gpu else "--cpu",
                   "--nuctl", args.nuctl]
    name = redeploy.function_name(current.family)
    if args.dry_run:
        print(f"# if {name} already runs with these labels, nothing to run: "
              f"{redeploy.swap_note(current.family, current.name, models)}; check with", file=out)
        print(f"{shlex.join([args.nuctl, 'get', 'function', name, '--platform', 'local'])}",
              file=out)
        print("# otherwise (the first round, or other labels) deploy it:", file=out, flush=True)
        return doors.deploy_nuclio([*deploy_argv, "--dry-run"])
    from autotrack.cvat.label_spec import label_spec

    if redeploy.deployed_spec(args.nuctl, name) == label_spec(names, "rectangle"):
        print(f"deploy: {redeploy.swap_note(current.family, current.name, models)}", file=out)
        return 0
    started = time.perf_counter()
    status = doors.deploy_nuclio(deploy_argv)
    current.mark("deploy", time.perf_counter() - started, function=name, status=status)
    return status


def _server_argv_cli(args: argparse.Namespace) -> list[str]:
    """The server options as cvat-cli spells them (no --backup-dir)."""
    argv = []
    for dest, option in SERVER_OPTIONS:
        value = getattr(args, dest, None)
        if value is not None and dest != "auth":
            argv += [option, str(value)]
    if getattr(args, "auth", None):
        argv += ["--auth", str(args.auth).split(":", 1)[0]]
    if getattr(args, "insecure", False):
        argv.append("--insecure")
    return argv


def reannotate(args: argparse.Namespace, current: Round, doors: Doors, out: TextIO) -> int:
    targets = [[str(t)] for t in args.reannotate] + [["--job", str(j)]
                                                     for j in args.reannotate_job]
    status = 0
    for target in targets:
        argv = ["task", "annotate", *target, "--replace", "--detector", current.name,
                *(["--device", args.device] if args.device else []),
                *(["--label-map", args.label_map] if args.label_map else []),
                *(["--dry-run"] if args.dry_run else []), *(["-q"] if args.quiet else []),
                *_server_argv(args)]
        print(f"re-annotate: {_shown(argv)}", file=out, flush=True)
        status = doors.run_command(argv) or status
    return status


# --- the command -----------------------------------------------------------------------------

def run_finetune(args: argparse.Namespace, out: TextIO, err: TextIO, doors: Doors) -> int:
    family = publishing.check_family(args.name)
    _train_options(args)  # option errors before anything runs
    _door(args)
    if (args.reannotate or args.reannotate_job or args.deploy == "agent") and \
            not (args.server_host or os.environ.get("CVAT_ACCESS_TOKEN")):
        raise InputError("--reannotate and --deploy agent need the server: --server-host URL")
    models = publishing.models_folder(args.models)
    if models.resolve() not in [d.resolve() for d in model_dirs()]:
        os.environ["AUTOTRACK_MODELS"] = os.pathsep.join(
            [str(models), *[str(d) for d in model_dirs()]])
        print(f"note: {models} is not in AUTOTRACK_MODELS; set AUTOTRACK_MODELS={models} so "
              "that autotrack annotate and the functions find the round by name", file=out)
    current = open_round(args, family, models, out)
    try:
        base = training.resolve_base(current.state["base"])  # a missing base: before the export
        dataset = make_dataset(args, current, doors, out)
        result = train_round(args, current, dataset, base, out, err)
        record = judge_round(args, current, dataset, base, result, out)
        publish_round(args, current, dataset, base, result, record, models, out)
    except Interrupted as exc:
        print(f"autotrack: {exc}", file=err)
        return 130
    except BaseException:
        forget_empty_round(current)
        raise
    steps = current.state.get("steps", {})
    print("times: " + ", ".join(f"{step} {about.get('seconds', 0):.1f} s"
                                for step, about in steps.items()), file=out)
    print(f"use it: autotrack annotate VIDEO -o OUT.xml --detector {current.name}", file=out)
    status = 0
    if args.deploy:
        names = list(judging.read_manifest(dataset)["names"])
        status = deploy_round(args, current, names, models, doors, out)
    if args.reannotate or args.reannotate_job:
        status = reannotate(args, current, doors, out) or status
    return status

