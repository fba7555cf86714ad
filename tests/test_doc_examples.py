"""Every ``simpool-bench ...`` command line the README, docs/ and examples/ show parses against the
CLI: the (sub)command exists, each flag is one of its options and each value converts. A renamed or
dropped flag then fails here, not in a reader's shell. Placeholders (``...``) are left out; lines
that only print (``--help``, ``--version``) are skipped, and a line with a placeholder or without
arguments may leave out a required one."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer

from simpool_bench.cli import app

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLES = sorted((ROOT / "examples").glob("*.yml"))
CODE_BLOCK = re.compile(r"^```[a-z]*\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`(simpool-bench [^`]*)`")
#: click's usage error as Typer (which vendors click) raises it: unknown option, bad value, missing argument.
UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
PLACEHOLDER = re.compile(r"^(\.\.\.|[A-Z][A-Z_]*)$")  # `...`, COMMAND, FILE, NAME, PATH


def command_lines(text: str, blocks: bool = True) -> list[str]:
    """The ``simpool-bench`` lines of ``text``: in code blocks (``blocks``; else the whole text, as
    a YAML file's ``run:`` steps), continuations joined and comments dropped, and inline spans."""
    shell = "\n".join(CODE_BLOCK.findall(text)) if blocks else text
    found = []
    for line in shell.replace("\\\n", " ").splitlines():
        line = re.sub(r"\s#.*$", "", line).strip().removeprefix("run:").strip()
        if line.startswith("simpool-bench"):
            found.append(line)
    return found + [span.replace("\n", " ") for span in INLINE.findall(text)] if blocks else found


def examples() -> list[tuple[str, str]]:
    found = [(page.name, line) for page in PAGES for line in command_lines(page.read_text(encoding="utf-8"))]
    found += [(f.name, line) for f in EXAMPLES for line in command_lines(f.read_text(encoding="utf-8"), blocks=False)]
    return sorted(set(found))


def resolve(argv: list[str]) -> tuple[Any, list[str]]:
    """The (sub)command ``argv`` names and its own arguments (the group's own flags, such as -q, skipped)."""
    command = typer.main.get_command(app)
    args = list(argv)
    while hasattr(command, "commands"):  # a group
        while args and args[0].startswith("-"):  # the top level's -q
            args.pop(0)
        assert args, f"{argv}: no command"
        name = args.pop(0)
        assert name in command.commands, f"{argv}: no command {name!r} (have {', '.join(command.commands)})"
        command = command.commands[name]
    return command, args


def test_the_examples_are_found():
    found = examples()
    assert any(page == "README.md" and line.startswith("simpool-bench localize --checkpoint") for page, line in found)
    assert any(page == "github-actions.yml" and line.startswith("simpool-bench suite run") for page, line in found)
    assert len(found) >= 15, found


@pytest.mark.parametrize(("page", "line"), examples(), ids=[f"{p}: {line[:60]}" for p, line in examples()])
def test_example_parses(page: str, line: str):
    argv = shlex.split(line)[1:]
    if {"--help", "--version"} & set(argv):
        return  # they print and exit: nothing to parse
    if PLACEHOLDER.match(next((a for a in argv if a != "-q"), "")):
        return  # "simpool-bench COMMAND ..." names no command
    command, args = resolve(argv)
    given = [a for a in args if not PLACEHOLDER.match(a)]
    try:
        command.make_context(command.name, given)
    except UsageError as exc:
        if type(exc).__name__ == "MissingParameter" and (not args or given != args):
            return  # a mention (`simpool-bench inspect`, `... FILE`) need not give the required arguments
        pytest.fail(f"{page}: {line!r}: {exc.format_message()}")
