"""The command lines the README shows are the ones the code accepts: each is parsed by the
real parser of its tool (cvat-cli, the deploy scripts, annotate_task, autotrack) here."""

from __future__ import annotations

import inspect
import re
import shlex

import pytest

from conftest import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def _code_lines(prefix: str) -> list[str]:
    """Lines of the README's code blocks that start with ``prefix`` (continuations joined)."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", README, flags=re.S)
    joined = re.sub(r"\\\n\s*", " ", "\n".join(blocks))
    return [line.strip() for line in joined.splitlines() if line.strip().startswith(prefix)]


def _deploy_calls() -> list[tuple[str, list[str]]]:
    calls = re.findall(r"`serverless/(deploy_cpu|deploy_gpu)\.sh([^`]*)`", README)
    return [(script, shlex.split(args)) for script, args in calls]


def test_readme_shows_each_function_deployed_on_cpu_and_gpu():
    shown = {(script, args[args.index("--function") + 1])
             for script, args in _deploy_calls() if "--function" in args}
    for function in ("yolox", "ultralytics"):
        assert ("deploy_cpu", function) in shown and ("deploy_gpu", function) in shown


@pytest.mark.parametrize("script, args", _deploy_calls())
def test_readme_deploy_commands_run_dry(capsys, tmp_path, script, args):
    from autotrack.cvat import deploy

    kind = "--gpu" if script == "deploy_gpu" else "--cpu"
    assert deploy.main(["--dry-run", kind, *args, "--build-dir", str(tmp_path / "b")]) == 0
    printed = capsys.readouterr().out
    assert "nuctl deploy --project-name cvat" in printed


CVAT_CLI_LINES = _code_lines("cvat-cli ")


def test_readme_has_cvat_cli_lines_for_every_function_file():
    files = {line.split("--function-file ")[1].split()[0] for line in CVAT_CLI_LINES}
    assert files == {f"functions/{p.name}" for p in (REPO_ROOT / "functions").glob("*.py")}


@pytest.mark.parametrize("line", CVAT_CLI_LINES)
def test_readme_cvat_cli_lines_parse_and_name_real_parameters(line):
    from test_sdk_functions import _parse

    argv = shlex.split(line)[1:]
    if argv[:2] == ["function", "run-agent"]:
        argv[2] = "7"  # FUNCTION_ID placeholder
    args = _parse(argv)
    function_file = REPO_ROOT / args.function_file
    namespace: dict = {}
    exec(compile(function_file.read_text(), str(function_file), "exec"), namespace)  # noqa: S102
    accepted = dict(inspect.signature(namespace["create"]).parameters)
    if any(p.kind is p.VAR_KEYWORD for p in accepted.values()):  # passed on to the factory
        from autotrack.cvat.sdk_detection import create_detection_function

        accepted.update(inspect.signature(create_detection_function).parameters)
    assert set(args.function_parameters) <= set(accepted), line


def test_readme_yolox_cvat_cli_line_loads_the_function():
    from test_sdk_functions import load_function

    assert any(x.endswith("functions/yolox.py -p classes=str:person") for x in CVAT_CLI_LINES)
    function = load_function(REPO_ROOT / "functions/yolox.py", "classes=str:person")
    assert [label.name for label in function.spec.labels] == ["person"]


@pytest.mark.parametrize("line", _code_lines("python tools/annotate_task.py"))
def test_readme_annotate_task_lines_parse(line):
    from autotrack.cvat.annotate_task import build_parser

    argv = shlex.split(line)[2:]
    build_parser().parse_known_args(argv)  # "restore BACKUP" is its own sub-form


@pytest.mark.parametrize("line", _code_lines("AUTOTRACK_MODELS=../shared/data/models .venv/bin/autotrack"))
def test_readme_main_job_line_parses(line):
    from autotrack.cli import build_parser

    args = build_parser().parse_args(shlex.split(line)[2:])
    assert args.command == "annotate" and args.output == "out.xml"
