"""The README and the docs/ pages show command lines the code accepts and links that lead
somewhere: every command line in their code blocks is parsed by the real parser of its tool
(autotrack, cvat-cli, the deploy scripts), every relative link must name a file (and a heading
there, when it has a #fragment), and the README stays a five-minute read."""

from __future__ import annotations

import argparse
import inspect
import re
import shlex
from pathlib import Path

import pytest

from conftest import REPO_ROOT

README_PATH = REPO_ROOT / "README.md"
README = README_PATH.read_text(encoding="utf-8")
README_MAX_CHARS = 12_000
PAGES = [README_PATH, *sorted((REPO_ROOT / "docs").glob("*.md")),
         REPO_ROOT / "functions" / "README.md", REPO_ROOT / "serverless" / "README.md"]
TEXTS = {page: page.read_text(encoding="utf-8") for page in PAGES}
# Code blocks tagged with one of these show output, a synopsis or data, not commands to run.
NOT_COMMANDS = {"text", "json", "yaml"}
FENCE = re.compile(r"^```([\w-]*)[ \t]*\n(.*?)^```", flags=re.S | re.M)


def _rel(page: Path) -> str:
    return page.relative_to(REPO_ROOT).as_posix()


def _command_lines(text: str) -> list[str]:
    """Lines of the command code blocks of ``text`` (continuations joined, comments dropped)."""
    blocks = [body for lang, body in FENCE.findall(text) if lang not in NOT_COMMANDS]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(blocks))
    return [line.strip() for line in joined.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def _code_lines(prefix: str, pages: list[Path] = PAGES) -> list[str]:
    return [line for page in pages for line in _command_lines(TEXTS[page])
            if line.startswith(prefix)]


def _argv(line: str) -> list[str]:
    """A command line's words without leading ``VAR=value`` assignments and ``.venv/bin/``."""
    words = shlex.split(line, comments=True)
    while words and re.fullmatch(r"[A-Za-z_]\w*=.*", words[0]):
        words.pop(0)
    if words:
        words[0] = re.sub(r"^(\./)?\.venv/bin/", "", words[0])
    return words


def _outside_code(text: str) -> str:
    return FENCE.sub("", text)


# --- the README itself ---------------------------------------------------------------------


def test_readme_is_a_five_minute_read():
    assert len(README) <= README_MAX_CHARS, (
        f"README.md has {len(README)} characters; keep it at most {README_MAX_CHARS} and move "
        "detail to a docs/ page")


def test_readme_install_and_test_commands_are_the_ones_ci_runs():
    """.ci/run installs 'exactly as the README says' and runs 'the README's test command'."""
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    install = [line for line in ci if "pip install" in line]
    tests = [line for line in ci if "pytest" in line]
    data = [line for line in ci if "AUTOTRACK_TEST_DATA=" in line]
    assert install and tests and data
    shown = set(_command_lines(README))
    for line in install + tests + data:
        assert line.strip() in shown, f"README must show .ci/run's line {line.strip()!r}"


MAIN_JOB = "AUTOTRACK_MODELS=../shared/data/models .venv/bin/autotrack annotate"


@pytest.mark.parametrize("line", _code_lines(MAIN_JOB, [README_PATH]))
def test_readme_main_job_line_parses(line):
    from autotrack.cli import build_parser

    args = build_parser().parse_args(shlex.split(line)[2:])
    assert args.command == "annotate" and args.output == "out.xml"


def test_readme_shows_the_main_job():
    assert len(_code_lines(MAIN_JOB, [README_PATH])) == 1


def _door_rows() -> list[str]:
    section = README.split("## Doors into CVAT", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    assert len(rows) > 2, "the README's door table is missing"
    return rows[2:]  # below the header and its |---| line


def test_readme_door_table_says_which_editions_and_tasks_each_door_fits():
    for row in _door_rows():
        for edition in ("Community", "Online", "Enterprise"):
            assert edition in row, f"door row names no {edition}: {row[:80]}"
        assert re.search(r"video|image", row), f"door row names no task kind: {row[:80]}"
        assert re.search(r"\]\(docs/[\w-]+\.md(#[\w-]+)?\)", row), f"no docs link: {row[:80]}"


def test_readme_door_table_names_every_door():
    table = "\n".join(_door_rows())
    for folder in sorted(p.parent.name for p in REPO_ROOT.glob("serverless/*/nuclio")):
        assert f"`{folder}`" in table, f"Nuclio function {folder} has no door row"
    for door in ("autotrack annotate", "autotrack task annotate", "task restore", "--segmenter",
                 "cvat-cli task auto-annotate", "create-native", "run-agent"):
        assert door in table, f"no door row for {door}"


# --- every page: links ---------------------------------------------------------------------


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[^\w\- ]", "", text.replace("`", "").strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for match in re.finditer(r"^#{1,6} +(.+?) *#*$", _outside_code(TEXTS[page]), flags=re.M):
        slug = _slug(match.group(1))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _links() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", _outside_code(TEXTS[page])):
            if not re.match(r"[a-z][a-z+.-]*:", target):  # http:, https:, mailto:
                found.append((_rel(page), target))
    return found


LINKS = _links()


def test_pages_have_relative_links():
    assert len(LINKS) > 20


@pytest.mark.parametrize("page, target", LINKS)
def test_relative_links_point_to_existing_files(page, target):
    path, _, fragment = target.strip("<>").partition("#")
    source = REPO_ROOT / page
    resolved = (source.parent / path).resolve() if path else source
    assert resolved.exists(), f"{page}: link {target} names a missing file"
    assert resolved.is_relative_to(REPO_ROOT), f"{page}: link {target} leaves the repository"
    if fragment and resolved.suffix == ".md":
        assert resolved in TEXTS, f"{page}: link {target} goes to a page this test does not read"
        assert fragment in _anchors(resolved), f"{page}: {target} names no heading there"


@pytest.mark.parametrize("page", [_rel(p) for p in PAGES])
def test_module_names_exist(page):
    """Every ``autotrack.x.y`` a page names is a module of the package (or a name in one)."""
    root = REPO_ROOT / "shared"
    for name in sorted(set(re.findall(r"(?<![\w./-])autotrack(?:\.[A-Za-z_]\w*)+",
                                      TEXTS[REPO_ROOT / page]))):
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):
            base = root.joinpath(*parts[:cut])
            module = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
            if module.is_file():
                break
        else:
            pytest.fail(f"{page}: {name} is not a module of the package")
        rest = parts[cut:]
        if rest:
            source = module.read_text(encoding="utf-8")
            assert re.search(rf"^\s*(def|class) {rest[0]}\b|^{rest[0]}\b\s*[:=]", source,
                             flags=re.M), f"{page}: {name}: no {rest[0]} in {module.name}"


# --- every page: autotrack command lines ---------------------------------------------------


def _autotrack_lines() -> list[tuple[str, str]]:
    return [(_rel(page), line) for page in PAGES for line in _command_lines(TEXTS[page])
            if _argv(line)[:1] == ["autotrack"]]


AUTOTRACK_LINES = _autotrack_lines()


def _options(parser: argparse.ArgumentParser, *path: str) -> set[str]:
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return set(parser._option_string_actions)


def test_pages_show_every_autotrack_command():
    shown = {tuple(_argv(line)[1:3]) for _, line in AUTOTRACK_LINES}
    for command in (("annotate",), ("eval",), ("task", "annotate"), ("task", "restore")):
        assert any(words[:len(command)] == command for words in shown), command


@pytest.mark.parametrize("page, line", AUTOTRACK_LINES)
def test_autotrack_lines_parse(capsys, page, line):
    from autotrack.cli import build_parser

    argv = _argv(line)[1:]
    parser = build_parser()
    if (argv[:2] == ["task", "annotate"] and "--segmenter" in argv
            and "--segmenter" not in _options(parser, "task", "annotate")):
        pytest.skip("docs/cvat-tasks.md shows `task annotate --segmenter` (new) ahead of its "
                    "parser; this line is checked once the option exists")
    try:
        args = parser.parse_args(argv)
    except SystemExit:
        pytest.fail(f"{page}: {line}\n{capsys.readouterr().err}")
    if args.command == "task" and args.task_command == "annotate":
        assert (args.task_id is None) != (args.job is None), f"{page}: TASK_ID or --job: {line}"


def test_task_lines_use_cvat_cli_login_options():
    for page, line in AUTOTRACK_LINES:
        argv = _argv(line)
        if argv[1] == "task" and argv[2] == "annotate":
            assert "--server-host" in argv, f"{page}: {line}"
        assert "--token" not in argv, f"{page}: --token is gone ($CVAT_ACCESS_TOKEN): {line}"


# --- every page: Nuclio deploy lines -------------------------------------------------------


def _deploy_calls() -> list[tuple[str, tuple[str, ...]]]:
    calls = {(script, tuple(shlex.split(args))) for text in TEXTS.values()
             for script, args in re.findall(
                 r"`serverless/(deploy_cpu|deploy_gpu)\.sh([^`]*)`", text)}
    return sorted(calls)


def test_docs_show_each_function_deployed_on_cpu_and_gpu():
    shown = {(script, args[args.index("--function") + 1])
             for script, args in _deploy_calls() if "--function" in args}
    for function in ("yolox", "ultralytics"):
        assert ("deploy_cpu", function) in shown and ("deploy_gpu", function) in shown
    folders = {p.parent.name for p in REPO_ROOT.glob("serverless/*/nuclio")}
    assert folders <= {function for _, function in shown}, "a Nuclio function has no deploy line"


@pytest.mark.parametrize("script, args", _deploy_calls())
def test_deploy_commands_run_dry(capsys, tmp_path, script, args):
    from autotrack.cvat.deploy import nuclio as deploy

    kind = "--gpu" if script == "deploy_gpu" else "--cpu"
    assert deploy.main(["--dry-run", kind, *args, "--build-dir", str(tmp_path / "b")]) == 0
    printed = capsys.readouterr().out
    assert "nuctl deploy --project-name cvat" in printed


# --- every page: cvat-cli lines ------------------------------------------------------------


CVAT_CLI_LINES = sorted(set(_code_lines("cvat-cli ")))


def test_docs_have_cvat_cli_lines_for_every_function_file():
    files = {line.split("--function-file ")[1].split()[0] for line in CVAT_CLI_LINES}
    assert files == {f"functions/{p.name}" for p in (REPO_ROOT / "functions").glob("*.py")}


@pytest.mark.parametrize("line", CVAT_CLI_LINES)
def test_cvat_cli_lines_parse_and_name_real_parameters(line):
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
        from autotrack.cvat.sdk.detection import create_detection_function

        accepted.update(inspect.signature(create_detection_function).parameters)
    assert set(args.function_parameters) <= set(accepted), line


def test_yolox_cvat_cli_line_loads_the_function():
    from test_sdk_functions import load_function

    assert any(x.endswith("functions/yolox.py -p classes=str:person") for x in CVAT_CLI_LINES)
    function = load_function(REPO_ROOT / "functions/yolox.py", "classes=str:person")
    assert [label.name for label in function.spec.labels] == ["person"]
