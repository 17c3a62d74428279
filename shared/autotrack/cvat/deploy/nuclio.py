"""Deploy the Nuclio functions in serverless/ with nuctl, the way CVAT's own scripts do.

``serverless/deploy_cpu.sh`` and ``serverless/deploy_gpu.sh`` run this module. For every
function folder ``serverless/<name>/nuclio`` (with a ``function.yaml``, or
``function-gpu.yaml`` for ``--gpu``) it

1. copies the folder into a build context ``build/nuclio/<name>`` (git ignores ``build/``),
2. puts a freshly built cvat-autotrack wheel (``pip wheel --no-deps``) beside it, which the
   function's build directives install into the image,
3. runs ``nuctl deploy --project-name cvat --path <context> --file <context>/function.yaml
   --platform local`` on CVAT's docker network,

after ``nuctl create project cvat`` and before ``nuctl get function``, as CVAT's scripts do.
``--dry-run`` prints every command and runs none. Only the standard library is used, so any
Python 3.9+ with pip can run it.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PROJECT = "cvat"
PLATFORM = "local"
DEFAULT_NETWORK = "cvat_cvat"  # the docker network of CVAT's docker-compose setup
CONFIG_FILES = {"cpu": "function.yaml", "gpu": "function-gpu.yaml"}


@dataclass(frozen=True)
class Step:
    """One thing the deployment does; ``shell()`` is how a person would type it.

    ``kind`` is "run" (a command), "rmtree", "mkdir", "copytree" (args: source, target) or
    "copyglob" (args: a glob pattern, a target folder); the file steps run in Python, so
    they work where cp and rm do not, and do what their shell text says.
    """

    kind: str
    args: tuple[str, ...]
    may_fail: bool = False

    def shell(self) -> str:
        if self.kind == "run":
            line = shlex.join(self.args)
        elif self.kind == "rmtree":
            line = f"rm -rf {shlex.quote(self.args[0])}"
        elif self.kind == "mkdir":
            line = f"mkdir -p {shlex.quote(self.args[0])}"
        elif self.kind == "copytree":
            line = f"cp -R {shlex.quote(self.args[0])} {shlex.quote(self.args[1])}"
        elif self.kind == "copyglob":
            folder, pattern = os.path.split(self.args[0])
            pattern = pattern if "*" in pattern else shlex.quote(pattern)
            line = f"cp {shlex.quote(folder)}/{pattern} {shlex.quote(self.args[1])}/"
        else:
            raise ValueError(f"unknown step kind {self.kind!r}")
        return f"{line} || true" if self.may_fail else line

    def execute(self) -> int:
        if self.kind == "run":
            return subprocess.run(list(self.args), check=False).returncode
        if self.kind == "rmtree":
            shutil.rmtree(self.args[0], ignore_errors=True)
        elif self.kind == "mkdir":
            Path(self.args[0]).mkdir(parents=True, exist_ok=True)
        elif self.kind == "copytree":
            shutil.copytree(self.args[0], self.args[1])
        elif self.kind == "copyglob":
            matches = sorted(glob.glob(self.args[0]))
            if not matches:
                print(f"error: nothing matches {self.args[0]}", file=sys.stderr)
                return 1
            for match in matches:
                shutil.copy2(match, self.args[1])
        return 0


@dataclass(frozen=True)
class Function:
    """A deployable function folder: serverless/<name>/nuclio."""

    name: str
    source: Path  # the nuclio folder
    config: str  # function.yaml or function-gpu.yaml


def repo_root(start: Path | None = None) -> Path | None:
    """The cvat-autotrack checkout holding this module (pyproject.toml beside serverless/)."""
    here = (start or Path(__file__)).resolve()
    for folder in [here, *here.parents]:
        if (folder / "pyproject.toml").is_file() and (folder / "serverless").is_dir():
            return folder
    return None


def discover(serverless: Path, kind: str) -> tuple[list[Function], list[str]]:
    """Function folders that have a config for this kind, and notes on those that do not."""
    config = CONFIG_FILES[kind]
    found, skipped = [], []
    for folder in sorted(p for p in serverless.glob("*/nuclio") if p.is_dir()):
        name = folder.parent.name
        if (folder / config).is_file():
            found.append(Function(name, folder, config))
        elif (folder / CONFIG_FILES["cpu"]).is_file():
            skipped.append(f"{name} has no {config}")
    return found, skipped


def plan(
    functions: Sequence[Function],
    *,
    repo: Path,
    build_dir: Path,
    nuctl: str = "nuctl",
    python: str = sys.executable,
    network: str | None = DEFAULT_NETWORK,
    env: Sequence[str] = (),
    create_project: bool = True,
    wheel: Path | None = None,
) -> list[Step]:
    """Every step of a deployment, in order; ``wheel`` is a prebuilt one to use instead of
    building it."""
    wheel_dir = build_dir / "wheel"
    steps = [Step("mkdir", (str(build_dir),))]
    if wheel is None:
        wheels = str(wheel_dir / "*.whl")
        steps += [
            Step("rmtree", (str(wheel_dir),)),
            Step("run", (python, "-m", "pip", "wheel", "--no-deps", "--wheel-dir",
                         str(wheel_dir), str(repo))),
        ]
    else:
        wheels = str(wheel)
    if create_project:
        # nuctl refuses to create a project that exists; that is not a failure here
        steps.append(Step("run", (nuctl, "create", "project", PROJECT, "--platform", PLATFORM),
                          may_fail=True))
    for function in functions:
        context = build_dir / function.name
        steps += [
            Step("rmtree", (str(context),)),
            Step("copytree", (str(function.source), str(context))),
            Step("copyglob", (wheels, str(context))),
            Step("run", deploy_command(function, context, nuctl=nuctl, network=network,
                                       env=env)),
        ]
    steps.append(Step("run", (nuctl, "get", "function", "--platform", PLATFORM)))
    return steps


def deploy_command(
    function: Function,
    context: Path,
    *,
    nuctl: str = "nuctl",
    network: str | None = DEFAULT_NETWORK,
    env: Sequence[str] = (),
) -> tuple[str, ...]:
    """``nuctl deploy`` for one staged function, with CVAT's project, platform and network."""
    argv = [nuctl, "deploy", "--project-name", PROJECT, "--path", str(context),
            "--file", str(context / function.config), "--platform", PLATFORM]
    for item in env:
        argv += ["--env", item]
    if network:
        argv += ["--platform-config", json.dumps({"attributes": {"network": network}})]
    return tuple(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m autotrack.cvat.deploy.nuclio",
        description="Build and deploy cvat-autotrack's Nuclio functions (serverless/*/nuclio) "
                    "to a local Nuclio with nuctl, for CVAT's AI tools.",
        epilog="Examples: serverless/deploy_cpu.sh --dry-run; serverless/deploy_gpu.sh "
               "--function yolox; serverless/deploy_cpu.sh --function ultralytics "
               "--env AUTOTRACK_ULTRALYTICS_MODEL=best.pt (with best.pt in "
               "serverless/ultralytics/nuclio/models/ and its label spec in function.yaml).",
    )
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--cpu", dest="kind", action="store_const", const="cpu",
                      help="deploy function.yaml of every function (the default)")
    kind.add_argument("--gpu", dest="kind", action="store_const", const="gpu",
                      help="deploy function-gpu.yaml of every function")
    parser.set_defaults(kind="cpu")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the commands without running any")
    parser.add_argument("--function", action="append", metavar="NAME",
                        help="deploy only this function (a folder name in serverless/); "
                             "may be repeated")
    parser.add_argument("--function-dir", type=Path, metavar="DIR",
                        help="deploy the function in this folder (main.py and function.yaml) "
                             "instead of those in serverless/; autotrack finetune --deploy "
                             "nuclio stages one per fine-tuned model family")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the functions (nuctl deploy --env)")
    parser.add_argument("--network", default=DEFAULT_NETWORK,
                        help=f"docker network CVAT runs on (default {DEFAULT_NETWORK}; "
                             "empty to leave it out)")
    parser.add_argument("--build-dir", type=Path,
                        help="where build contexts are staged (default build/nuclio in the repo)")
    parser.add_argument("--repo", type=Path,
                        help="the cvat-autotrack checkout (default: the one holding this file)")
    parser.add_argument("--nuctl", default=os.environ.get("NUCTL", "nuctl"),
                        help="nuctl executable (default $NUCTL or nuctl)")
    parser.add_argument("--wheel", type=Path,
                        help="a prebuilt cvat-autotrack wheel to install instead of building one")
    parser.add_argument("--no-project", action="store_true",
                        help=f"skip 'nuctl create project {PROJECT}'")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    repo = (args.repo or repo_root() or Path.cwd()).resolve()
    serverless = repo / "serverless"
    if not serverless.is_dir() or not (repo / "pyproject.toml").is_file():
        parser.error(f"{repo} is not a cvat-autotrack checkout (no serverless/ and "
                     "pyproject.toml); pass --repo")
    for item in args.env:
        if "=" not in item or not item.split("=", 1)[0].strip():
            parser.error(f"--env takes KEY=VALUE, got {item!r}")
    functions, skipped = discover(serverless, args.kind)
    if args.function_dir is not None:
        if args.function:
            parser.error("give --function or --function-dir, not both")
        folder = args.function_dir.resolve()
        if not (folder / CONFIG_FILES[args.kind]).is_file():
            parser.error(f"{folder} has no {CONFIG_FILES[args.kind]}")
        functions, skipped = [Function(folder.name, folder, CONFIG_FILES[args.kind])], []
    elif args.function:
        known = {f.name: f for f in functions}
        unknown = [name for name in args.function if name not in known]
        if unknown:
            parser.error(f"no {CONFIG_FILES[args.kind]} for {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(known)) or 'none'}")
        functions = [known[name] for name in dict.fromkeys(args.function)]
    if not functions:
        parser.error(f"no function in {serverless} has a {CONFIG_FILES[args.kind]}")
    if args.wheel is not None:
        if args.wheel.suffix != ".whl" or not args.wheel.is_file():
            parser.error(f"--wheel {args.wheel} is not a wheel file")
        args.wheel = args.wheel.resolve()
    build_dir = (args.build_dir or repo / "build" / "nuclio").resolve()
    steps = plan(functions, repo=repo, build_dir=build_dir, nuctl=args.nuctl,
                 network=args.network or None, env=args.env,
                 create_project=not args.no_project, wheel=args.wheel)

    print(f"# {args.kind.upper()} functions: {', '.join(f.name for f in functions)}")
    for note in skipped:
        print(f"# skipped: {note}")
    if args.dry_run:
        for step in steps:
            print(step.shell())
        return 0
    if shutil.which(args.nuctl) is None:
        print(f"error: {args.nuctl} not found; install nuctl of the version CVAT's nuclio "
              "dashboard runs (https://github.com/nuclio/nuclio/releases), or pass --nuctl",
              file=sys.stderr)
        return 1
    for step in steps:
        print(f"+ {step.shell()}", flush=True)
        status = step.execute()
        if status != 0 and not step.may_fail:
            print(f"error: step failed with status {status}: {step.shell()}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
