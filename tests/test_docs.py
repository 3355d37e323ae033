"""The docs are executed: every ```python block in README.md and docs/*.md runs here.

Each file's blocks run in order in one namespace, inside a fresh temporary working
directory, so relative paths such as ``data/q`` land there. A failing block is reported
by file, block number and line. The CLI reference is checked against the real parser:
every ``diskq`` subcommand, argument and option must have help text and appear in
docs/cli.md, in the section of its subcommand; so must every ``diskq-worker`` option and
exit code, in its section.
"""

from __future__ import annotations

import argparse
import re
import sys
import traceback
from pathlib import Path
from typing import Any

import pytest

import diskqueue  # noqa: F401  (imported before the blocks change directory)
from diskqueue.cli.admin import _parser
from diskqueue.structures.handle import Handle

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)

QUICKSTART = [
    "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' "
    "&& .venv/bin/python -m diskqueue.demo",
    ".venv/bin/python -m pytest",
]


def blocks(path: Path, *langs: str) -> list[tuple[int, str]]:
    """``(line, code)`` of each fenced block in one of ``langs``, in file order."""
    text = path.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, m.start()) + 2, m.group("body"))
        for m in FENCE.finditer(text)
        if m.group("lang") in langs
    ]


def _close_handles(namespace: dict[str, Any]) -> None:
    for value in namespace.values():
        if isinstance(value, Handle):
            value.close()


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_python_blocks_run(doc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = blocks(doc, "python")
    if doc.name != "benchmarks.md":
        assert code, f"{doc.name} has no python example"
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # as for a script run from there
    name = doc.relative_to(ROOT).as_posix()
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    try:
        for number, (line, source) in enumerate(code, start=1):
            try:
                # pad with blank lines so tracebacks give the line in the markdown file
                exec(compile("\n" * (line - 1) + source, name, "exec"), namespace)
            except Exception:
                pytest.fail(
                    f"{name}, python block {number} (line {line}) failed:\n"
                    f"{traceback.format_exc()}",
                    pytrace=False,
                )
    finally:
        _close_handles(namespace)
        for module in [m for m in sys.modules.values()
                       if str(getattr(m, "__file__", None) or "").startswith(str(tmp_path))]:
            del sys.modules[module.__name__]


def test_readme_opens_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first = FENCE.search(text)
    assert first is not None and first.group("lang") in ("bash", "console", "sh")
    before = [line for line in text[: first.start()].splitlines() if line.strip()]
    assert len(before) == 2 and before[0].startswith("# "), (
        "README must open with its title and a one-line description, then the commands"
    )
    commands = [
        line.strip().removeprefix("$ ")
        for line in first.group("body").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert commands == QUICKSTART


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "python -m pytest" in ci


def _subcommands() -> dict[str, tuple[str, argparse.ArgumentParser]]:
    """``{name: (help, parser)}`` for every ``diskq`` subcommand."""
    parser = _parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            return {name: (helps.get(name, ""), sub) for name, sub in action.choices.items()}
    raise AssertionError("diskq has no subcommands")


def _section(text: str, command: str) -> str:
    """The part of docs/cli.md under the heading for ``diskq COMMAND``."""
    match = re.search(rf"^##+ `diskq {command}`\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"docs/cli.md has no section headed `diskq {command}`"
    return match.group(1)


def test_cli_reference_covers_every_command_and_option() -> None:
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    commands = _subcommands()
    assert commands
    for name, (help_text, sub) in commands.items():
        assert help_text.strip(), f"`diskq {name}` has no help"
        section = _section(text, name)
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            shown = action.option_strings or [(action.metavar or action.dest).upper()]
            assert action.help and action.help.strip() and action.help != argparse.SUPPRESS, (
                f"`diskq {name} {shown[0]}` has no help"
            )
            assert any(f"`{s}`" in section for s in shown), (
                f"`diskq {name} {shown[0]}` is not documented in docs/cli.md"
            )
    assert "python -m diskqueue.demo" in text


def test_exit_codes_documented() -> None:
    from diskqueue.cli import admin as cli

    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for code in (cli.EXIT_OK, cli.EXIT_ERROR, cli.EXIT_USAGE):
        assert re.search(rf"^\| {code} \|", text, re.M), f"exit code {code} is not documented"


def test_worker_cli_reference_covers_every_option_and_exit_code() -> None:
    from diskqueue.cli import worker as worker_cli

    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    match = re.search(r"^## `diskq-worker`\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, "docs/cli.md has no section headed `diskq-worker`"
    section = match.group(1)
    parser = worker_cli._parser()
    assert "examples:" in (parser.epilog or "")
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        shown = action.option_strings or [(action.metavar or action.dest).upper()]
        assert action.help and action.help.strip() and action.help != argparse.SUPPRESS, (
            f"`diskq-worker {shown[0]}` has no help"
        )
        assert any(f"`{s}`" in section for s in shown), (
            f"`diskq-worker {shown[0]}` is not documented in docs/cli.md"
        )
    for name in ("EXIT_OK", "EXIT_ERROR", "EXIT_USAGE", "EXIT_APP", "EXIT_UNFINISHED"):
        code = getattr(worker_cli, name)
        assert re.search(rf"^\| {code} \| `{name}` \|", section, re.M), (
            f"diskq-worker exit code {code} ({name}) is not documented"
        )
