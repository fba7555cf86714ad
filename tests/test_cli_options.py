"""Every command and flag of the CLI before the issue-12 refactor is still there, with its default.

``cli_options_before_issue12.json`` was written from the CLI as it was before the refactor
(command -> first flag -> [all spellings, default]); today's CLI must offer a superset. The option
groups the commands share (``options.shared_options``) reach Typer after each command's own options.
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from simpool_bench.cli import app
from simpool_bench.cli.options import ENGINE_OPTIONS, MODEL_OPTIONS, OUTPUT_OPTIONS, shared_options

#: Defaults changed on purpose, with the reason. discover --split: the dataset's own default split
#: from the registry (trainval for VOC, as before; train for coco20k, LOST's --set train, as extract
#: already recorded it), so coco20k has one split name everywhere. classify --knn-k: a comma list,
#: DINO's k = 10, 20, 100 and 200 in one pass (issue 13), one row per k. compare --reference: a row
#: index or a row label (issue 13's --by checkpoint|label rows have labels), so the default 0 is text.
CHANGED = {("discover", "--split"): None, ("classify", "--knn-k"): "10,20,100,200", ("compare", "--reference"): "0"}
BEFORE = json.loads((Path(__file__).parent / "cli_options_before_issue12.json").read_text())


def _plain(v):
    if isinstance(v, enum.Enum):
        v = v.value
    return v if isinstance(v, (int, float, str, bool, type(None))) else str(v)


def _options(group, prefix=""):
    out = {}
    for name, sub in sorted(group.commands.items()):
        path = f"{prefix} {name}".strip()
        if hasattr(sub, "commands"):
            out.update(_options(sub, path))
        else:
            out[path] = {
                p.opts[0]: [sorted((*p.opts, *p.secondary_opts)), _plain(p.default)]
                for p in sub.params
                if type(p).__name__.endswith("Option")
            }
    return out


def test_every_command_and_flag_and_default_of_before_is_kept():
    now = _options(typer.main.get_command(app))
    missing = sorted(set(BEFORE) - set(now))
    assert not missing, f"commands gone: {missing}"
    for command, options in BEFORE.items():
        spellings_now = {s for names, _ in now[command].values() for s in names}
        for first, (names, default) in options.items():
            assert set(names) <= spellings_now, f"{command}: {names} gone"
            default = CHANGED.get((command, first), default)
            assert now[command][first][1] == default, f"{command} {first}: default {now[command][first][1]!r}, was {default!r}"


def test_the_run_commands_declare_the_shared_groups_after_their_own_options():
    commands = typer.main.get_command(app).commands
    shared = [*MODEL_OPTIONS.names, *ENGINE_OPTIONS.names, *OUTPUT_OPTIONS.names]
    for name in ("classify", "localize", "discover"):
        names = [p.name for p in commands[name].params]
        assert names[-len(shared) :] == shared, name
        assert not set(names[: -len(shared)]) & set(shared), name
    batch = {
        name: next(p.default for p in commands[name].params if p.name == "batch_size") for name in ("classify", "discover", "visualize")
    }
    assert batch == {"classify": 64, "discover": 16, "visualize": 16}


def test_a_command_gets_its_shared_options_in_shared_and_ctx_params():
    seen: dict[str, Any] = {}

    @shared_options(OUTPUT_OPTIONS.with_defaults(formats="md"))
    def command(ctx: typer.Context, n: int = 1, **shared: Any) -> None:
        seen.update(params=dict(ctx.params), shared=shared)

    tool = typer.Typer()
    tool.command()(command)
    res = CliRunner().invoke(tool, ["--n", "2", "-o", "there"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert seen["shared"] == {"out": Path("there"), "formats": "md"}
    assert seen["params"] == {"n": 2, "out": Path("there"), "formats": "md"}


def test_shared_options_refuse_a_command_without_shared_or_with_an_option_twice():
    def no_room(n: int = 1) -> None: ...

    def out_twice(out: int = 1, **shared: Any) -> None: ...

    with pytest.raises(TypeError, match=r"need a last \*\*shared"):
        shared_options(OUTPUT_OPTIONS)(no_room)
    with pytest.raises(TypeError, match="declared twice: out"):
        shared_options(OUTPUT_OPTIONS)(out_twice)
    with pytest.raises(KeyError, match="not options of this group: outt"):
        OUTPUT_OPTIONS.without("outt")
