"""serverless/deploy_cpu.sh and deploy_gpu.sh: the nuctl commands they run, checked without nuctl
(--dry-run prints them; a stand-in nuctl records what a real run hands it)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from autotrack.cvat.deploy import nuclio as deploy
from conftest import REPO_ROOT

SERVERLESS = REPO_ROOT / "serverless"
FUNCTIONS = ["bytetrack", "nanotrack", "ostrack", "reid", "sam2-interactor", "sam2-tracker", "sam3",
             "ultralytics", "vittrack", "xmem", "yolox"]
NETWORK_CONFIG = json.dumps({"attributes": {"network": "cvat_cvat"}})


def expected_deploy(function: str, config: str, build: Path) -> list[str]:
    context = build / function
    return ["nuctl", "deploy", "--project-name", "cvat", "--path", str(context),
            "--file", str(context / config), "--platform", "local",
            "--platform-config", NETWORK_CONFIG]


def dry_run(capsys, *args: str) -> list[str]:
    assert deploy.main(["--dry-run", *args]) == 0
    return capsys.readouterr().out.splitlines()


def commands(lines: list[str]) -> list[list[str]]:
    return [shlex.split(line) for line in lines if line and not line.startswith("#")]


@pytest.mark.parametrize(("kind", "config"), [("--cpu", "function.yaml"),
                                              ("--gpu", "function-gpu.yaml")])
def test_dry_run_prints_nuctl_deploy_for_every_function(capsys, tmp_path, kind, config):
    build = tmp_path / "build"
    lines = dry_run(capsys, kind, "--build-dir", str(build))
    argvs = commands(lines)
    deploys = [argv for argv in argvs if argv[:2] == ["nuctl", "deploy"]]
    assert deploys == [expected_deploy(f, config, build) for f in FUNCTIONS]
    assert argvs[0] == ["mkdir", "-p", str(build)]
    assert ["nuctl", "create", "project", "cvat", "--platform", "local", "||", "true"] in argvs
    assert argvs[-1] == ["nuctl", "get", "function", "--platform", "local"]
    wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir",
             str(build / "wheel"), str(REPO_ROOT)]
    assert wheel in argvs
    for function in FUNCTIONS:  # each context: the function folder, then the wheel, then deploy
        context = build / function
        staged = [["rm", "-rf", str(context)],
                  ["cp", "-R", str(SERVERLESS / function / "nuclio"), str(context)]]
        start = argvs.index(staged[0])
        assert argvs[start:start + 2] == staged
        assert lines[lines.index(shlex.join(staged[1])) + 1] == \
            f"cp {build / 'wheel'}/*.whl {context}/"
        assert argvs.index(wheel) < start < argvs.index(expected_deploy(function, config, build))
    assert not build.exists()  # a dry run runs nothing


@pytest.mark.parametrize("script,config", [("deploy_cpu.sh", "function.yaml"),
                                           ("deploy_gpu.sh", "function-gpu.yaml")])
def test_shell_scripts_print_the_same_commands(capsys, tmp_path, script, config):
    build = tmp_path / "b"
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(SERVERLESS / script), "--dry-run", "--build-dir", str(build)],
        capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    kind = "--gpu" if "gpu" in script else "--cpu"
    assert result.stdout.splitlines() == dry_run(capsys, kind, "--build-dir", str(build))
    deploys = [a for a in commands(result.stdout.splitlines()) if a[:2] == ["nuctl", "deploy"]]
    assert deploys == [expected_deploy(f, config, build) for f in FUNCTIONS]


@pytest.mark.parametrize("script", ["deploy_cpu.sh", "deploy_gpu.sh"])
def test_shell_scripts_help(script):
    result = subprocess.run(["bash", str(SERVERLESS / script), "--help"], capture_output=True,
                            text=True, env={**os.environ, "PYTHON": sys.executable},
                            timeout=60, check=False)
    assert result.returncode == 0
    assert "--dry-run" in result.stdout and "--function" in result.stdout


def test_one_function_extra_env_and_no_network(capsys, tmp_path):
    lines = dry_run(capsys, "--gpu", "--function", "yolox", "--build-dir", str(tmp_path),
                    "--env", "AUTOTRACK_DEFAULT_THRESHOLD=0.3", "--network", "",
                    "--no-project", "--nuctl", "/opt/nuclio/nuctl")
    argvs = commands(lines)
    deploys = [argv for argv in argvs if argv[1:2] == ["deploy"]]
    context = tmp_path / "yolox"
    assert deploys == [["/opt/nuclio/nuctl", "deploy", "--project-name", "cvat",
                        "--path", str(context), "--file", str(context / "function-gpu.yaml"),
                        "--platform", "local", "--env", "AUTOTRACK_DEFAULT_THRESHOLD=0.3"]]
    assert not any(argv[1:3] == ["create", "project"] for argv in argvs)


@pytest.mark.parametrize("args,message", [
    (["--function", "nope"], "known: bytetrack, nanotrack, ostrack, reid, sam2-interactor, sam2-tracker, "
                             "sam3, ultralytics, vittrack, xmem, yolox"),
    (["--env", "NOEQUALS"], "KEY=VALUE"),
    (["--cpu", "--gpu"], "not allowed"),
    (["--wheel", "missing.whl"], "not a wheel"),
    (["--repo", "/"], "not a cvat-autotrack checkout"),
])
def test_bad_options_exit_2_with_a_reason(capsys, args, message):
    with pytest.raises(SystemExit) as exited:
        deploy.main(["--dry-run", *args])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_nuctl_is_one_clear_error(capsys, tmp_path):
    status = deploy.main(["--nuctl", str(tmp_path / "no-nuctl"), "--build-dir", str(tmp_path)])
    assert status == 1
    assert "not found" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing was staged


def test_a_real_run_stages_contexts_and_calls_nuctl(capsys, tmp_path):
    """With a prebuilt wheel and a stand-in nuctl, every step really runs."""
    log = tmp_path / "nuctl.log"
    nuctl = tmp_path / "nuctl"
    nuctl.write_text(  # one line per call, arguments separated by tabs
        f'#!/bin/sh\nfor a in "$@"; do printf "%s\\t" "$a"; done >> {shlex.quote(str(log))}\n'
        f'echo >> {shlex.quote(str(log))}\n'
        '[ "$1" = create ] && exit 1\nexit 0\n')  # the project exists already
    nuctl.chmod(0o755)
    wheel = tmp_path / "cvat_autotrack-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK\x05\x06" + bytes(18))
    build = tmp_path / "build"
    stale = build / "yolox" / "stale.txt"
    stale.parent.mkdir(parents=True)
    stale.write_text("from an earlier deploy")
    status = deploy.main(["--gpu", "--nuctl", str(nuctl), "--wheel", str(wheel),
                          "--build-dir", str(build)])
    assert status == 0, capsys.readouterr().err
    calls = [line.rstrip("\t").split("\t") for line in log.read_text().splitlines()]
    assert calls[0] == ["create", "project", "cvat", "--platform", "local"]
    assert calls[-1] == ["get", "function", "--platform", "local"]
    assert calls[1:-1] == [
        expected_deploy(f, "function-gpu.yaml", build)[1:] for f in FUNCTIONS]
    for function in FUNCTIONS:
        context = build / function
        assert sorted(p.name for p in context.iterdir() if p.name != "__pycache__") == sorted(
            [wheel.name, *(p.name for p in (SERVERLESS / function / "nuclio").iterdir()
                           if p.name != "__pycache__")])
    assert not stale.exists()
    assert "pip" not in capsys.readouterr().out  # the given wheel is used, none is built


def test_steps_render_as_shell():
    assert deploy.Step("run", ("nuctl", "x y")).shell() == "nuctl 'x y'"
    assert deploy.Step("run", ("a",), may_fail=True).shell() == "a || true"
    assert deploy.Step("copyglob", ("/w d/*.whl", "/c")).shell() == "cp '/w d'/*.whl /c/"
    assert deploy.Step("copyglob", ("/w/a b.whl", "/c")).shell() == "cp /w/'a b.whl' /c/"
    with pytest.raises(ValueError):
        deploy.Step("teleport", ()).shell()
