"""The redeploy step: serve a published round from CVAT, without the function vanishing.

**Nuclio.** A fine-tuned family gets its own function, ``autotrack-ft-FAMILY``, staged from
``serverless/ultralytics/nuclio`` with its ``function.yaml`` rewritten
(:func:`function_yaml`):

* the label spec regenerated from the model's class names
  (:func:`autotrack.cvat.label_spec.label_spec`);
* the models folder mounted read-only at ``/opt/nuclio/finetuned`` (a ``hostPath`` volume)
  and first in ``AUTOTRACK_MODELS``;
* ``AUTOTRACK_ULTRALYTICS_MODEL=FAMILY``, which means the family's newest round, and
  ``AUTOTRACK_RELOAD_SECONDS=30``: the handler looks for a newer round at most every 30 s and
  swaps it in before answering (:func:`autotrack.cvat.nuclio.detector.handle_reloading`).

So the first round is deployed once (``nuctl deploy``, which builds the image), and every
later round with the same classes needs no deploy at all: publishing it into the mounted
folder is the redeploy, and the function never leaves CVAT's list. A round with other
classes needs the new label spec, so it is deployed again.

**Agent.** ``cvat-cli function create-native`` / ``run-agent`` lines with
``functions/ultralytics.py`` and ``-p model=str:NAME-rN``, the models folder in
AUTOTRACK_MODELS.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from autotrack.cvat.label_spec import label_spec, spec_yaml_block
from autotrack.errors import InputError

MOUNT = "/opt/nuclio/finetuned"
RELOAD_SECONDS = 30
CONFIGS = {False: "function.yaml", True: "function-gpu.yaml"}


def repo_root() -> Path | None:
    """The cvat-autotrack checkout holding this package (serverless/ beside pyproject.toml)."""
    for folder in Path(__file__).resolve().parents:
        if (folder / "pyproject.toml").is_file() and (folder / "serverless").is_dir():
            return folder
    return None


def function_name(family: str) -> str:
    return "autotrack-ft-" + re.sub(r"[^a-z0-9-]+", "-", family).strip("-")


def _replace(text: str, pattern: str, new: str, what: str) -> str:
    result, count = re.subn(pattern, lambda _: new, text, count=1, flags=re.M | re.S)
    if count != 1:
        raise InputError(f"the ultralytics function.yaml has changed shape ({what} not found); "
                         "autotrack finetune cannot rewrite it")
    return result


def function_yaml(text: str, family: str, class_names: Sequence[str],
                  models_folder: Path) -> str:
    """The ultralytics function.yaml rewritten for a fine-tuned family (module docstring)."""
    spec = label_spec(class_names, "rectangle")
    text = _replace(text, r"^  name: autotrack-pth-ultralytics$",
                    f"  name: {function_name(family)}", "metadata.name")
    text = _replace(text, r"^    name: Ultralytics YOLO \(autotrack\)$",
                    f"    name: {family} (autotrack finetune)", "annotations.name")
    text = _replace(text, r"^    spec: \|\n.*?(?=^\S)", spec_yaml_block(spec) + "\n\n",
                    "annotations.spec")
    text = _env(text, "AUTOTRACK_ULTRALYTICS_MODEL", family)
    text = _env(text, "AUTOTRACK_MODELS", f"{MOUNT}:/opt/nuclio/models")
    text = _replace(text, r"^  env:\n", "  env:\n    - name: AUTOTRACK_RELOAD_SECONDS\n"
                                        f"      value: '{RELOAD_SECONDS}'\n", "spec.env")
    text = _replace(text, r"^        - kind: RUN\n          value: AUTOTRACK_MODELS=\S+ python -m "
                          r"autotrack\.cvat\.deploy\.bake \S+\n", "", "the bake directive")
    volume = ("  volumes:\n"
              "    - volume:\n"
              "        name: autotrack-models\n"
              "        hostPath:\n"
              f"          path: {json.dumps(str(models_folder.resolve()))}\n"
              "      volumeMount:\n"
              "        name: autotrack-models\n"
              f"        mountPath: {MOUNT}\n"
              "        readOnly: true\n\n")
    return _replace(text, r"^  build:\n", volume + "  build:\n", "spec.build")


def _env(text: str, name: str, value: str) -> str:
    """The value of environment variable ``name`` in function.yaml's ``spec.env`` set."""
    result, count = re.subn(rf"(- name: {name}\n\s+value: )[^\n]+",
                            lambda m: m.group(1) + json.dumps(value), text, count=1)
    if count != 1:
        raise InputError(f"the ultralytics function.yaml has changed shape ({name} not found); "
                         "autotrack finetune cannot rewrite it")
    return result


def stage_function(folder: Path, family: str, class_names: Sequence[str], models_folder: Path,
                   *, gpu: bool = False) -> Path:
    """``folder/autotrack-ft-FAMILY``: main.py and the rewritten function.yaml (or
    function-gpu.yaml), ready for ``python -m autotrack.cvat.deploy.nuclio --function-dir``."""
    repo = repo_root()
    if repo is None:
        raise InputError("--deploy nuclio stages serverless/ultralytics of a cvat-autotrack "
                         "checkout; run it from a checkout (pip install -e .)")
    source = repo / "serverless" / "ultralytics" / "nuclio"
    config = CONFIGS[gpu]
    target = folder / function_name(family)
    try:
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        shutil.copy2(source / "main.py", target / "main.py")
        text = (source / config).read_text(encoding="utf-8")
        (target / config).write_text(function_yaml(text, family, class_names, models_folder),
                                     encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot stage the Nuclio function in {target}: "
                         f"{exc.strerror or exc}") from None
    return target


def deployed_spec(nuctl: str, name: str) -> list[dict] | None:
    """The label spec of a deployed function (``nuctl get function NAME -o json``), or None
    when nuctl is missing, the function is not there, or its answer cannot be read."""
    if shutil.which(nuctl) is None:
        return None
    try:
        done = subprocess.run([nuctl, "get", "function", name, "--platform", "local",
                               "--output", "json"], capture_output=True, text=True, timeout=60,
                              check=False)
        if done.returncode != 0:
            return None
        config = json.loads(done.stdout)
        if isinstance(config, list):
            config = config[0] if config else {}
        return json.loads(config["metadata"]["annotations"]["spec"])
    except (OSError, ValueError, KeyError, TypeError, IndexError, subprocess.SubprocessError):
        return None


def swap_note(family: str, round_name: str, models_folder: Path) -> str:
    return (f"{function_name(family)} serves the newest round of {family} from "
            f"{models_folder}: it loads {round_name} within {RELOAD_SECONDS} s of its next "
            "request, with no rebuild")


def agent_lines(round_name: str, models_folder: Path, server: Sequence[str],
                device: str | None) -> list[str]:
    """The cvat-cli lines that serve ``round_name`` from an agent on this machine."""
    repo = repo_root()
    function_file = str(repo / "functions" / "ultralytics.py") if repo else \
        "functions/ultralytics.py"
    cli = shlex.join(["cvat-cli", *server])
    params = ["-p", f"model=str:{round_name}"]
    if device:
        params += ["-p", f"device=str:{device}"]
    return [
        f"export AUTOTRACK_MODELS={shlex.quote(str(models_folder.resolve()))}",
        f"{cli} function create-native {shlex.quote(round_name + ' (autotrack)')} "
        f"--function-file {shlex.quote(function_file)} {shlex.join(params[:2])}",
        f"{cli} function run-agent FUNCTION_ID --function-file {shlex.quote(function_file)} "
        f"{shlex.join(params)}",
    ]
