"""console: plain progress lines for logs, the bar's rate column, --quiet."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from simpool_bench import console as C

LINE = re.compile(r"^(?P<d>.+): (?P<done>\d+)/(?P<total>\d+) images, (?P<rate>\d+\.\d) img/s, ETA (?P<eta>\d+:\d\d)$")
FINAL = re.compile(r"^(?P<d>.+): (?P<done>\d+)/(?P<total>\d+) images in (?P<t>\d+:\d\d), (?P<rate>\d+\.\d) img/s$")


@pytest.fixture
def err(monkeypatch):
    """stderr as a plain (non-terminal) text buffer."""
    buf = io.StringIO()
    monkeypatch.setattr(C, "err_console", Console(file=buf, width=200))
    C.set_quiet(False)
    yield buf
    C.set_quiet(False)


def test_clock():
    assert [C.clock(s) for s in (0, 0.4, 59.6, 65, 3599, 3725)] == ["0:00", "0:00", "1:00", "1:05", "59:59", "1:02:05"]


def test_plain_lines_count_every_advance_and_end_with_a_final_line(err, monkeypatch):
    monkeypatch.setattr(C, "PLAIN_EVERY_S", 0.0)  # a line at every advance
    bar = C.start_progress("classify cub", 10)
    assert isinstance(bar, C.PlainProgress)
    for n in (3, 4, 3):
        bar.advance(bar.task_ids[0], n)
    bar.stop()
    bar.stop()  # a second stop prints nothing
    lines = err.getvalue().splitlines()
    assert len(lines) == 3  # after 3 and 7 images, then the final line (none at 10/10 before it)
    got = [LINE.match(ln) for ln in lines[:2]]
    assert all(got) and [(m["d"], int(m["done"]), int(m["total"])) for m in got] == [("classify cub", 3, 10), ("classify cub", 7, 10)]
    final = FINAL.match(lines[2])
    assert final and (final["d"], int(final["done"]), int(final["total"])) == ("classify cub", 10, 10)


def test_plain_lines_wait_for_the_interval(err, monkeypatch):
    monkeypatch.setattr(C, "PLAIN_EVERY_S", 3600.0)
    bar = C.start_progress("extract", 5, "images")
    for _ in range(5):
        bar.advance(bar.task_ids[0])
    bar.stop()
    assert [bool(FINAL.match(ln)) for ln in err.getvalue().splitlines()] == [True]


def test_plain_steps_say_steps_per_second(err, monkeypatch):
    monkeypatch.setattr(C, "PLAIN_EVERY_S", 0.0)
    bar = C.start_progress("train", 4, "steps")
    bar.advance(bar.task_ids[0])
    bar.stop()
    first, last = err.getvalue().splitlines()
    assert re.fullmatch(r"train: 1/4 steps, \d+\.\d steps/s, ETA \d+:\d\d", first)
    assert re.fullmatch(r"train: 1/4 steps in \d+:\d\d, \d+\.\d steps/s", last)


def test_the_terminal_bar_shows_the_rate(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr(C, "err_console", Console(file=buf, width=200, force_terminal=True))
    bar = C.start_progress("localize cub", 8)
    assert not isinstance(bar, C.PlainProgress)
    for _ in range(8):
        bar.advance(bar.task_ids[0], 1)
    bar.stop()
    assert "8/8" in buf.getvalue() and re.search(r"\d+\.\d img/s", buf.getvalue())


def test_quiet_silences_progress_and_notes_only(err):
    C.set_quiet(True)
    bar = C.start_progress("classify", 3)
    bar.advance(bar.task_ids[0], 3)
    bar.stop()
    C.note("note: something to know")
    assert err.getvalue() == ""
    C.set_quiet(False)
    C.note("note: something to know")
    assert err.getvalue() == "note: something to know\n"


def _ansi_console(width: int = 40) -> tuple[io.StringIO, Console]:
    buf = io.StringIO()
    return buf, Console(file=buf, width=width, force_terminal=True, color_system="standard")


TEXT = "| [bold]run[/bold] | /data/runs/vit_small_patch16_224/localize-cub/results.csv | 71.25 |"


def test_say_note_and_plain_lines_print_text_as_it_is_and_unwrapped(monkeypatch):
    """A path or a table row holding [brackets] or numbers is printed as given: no markup, no
    highlighting colours, no wrap at the console's width."""
    out, stdout = _ansi_console()
    err, stderr = _ansi_console()
    monkeypatch.setattr(C, "console", stdout)
    monkeypatch.setattr(C, "err_console", stderr)
    C.set_quiet(False)
    C.say(TEXT)
    C.note(TEXT)
    bar = C.PlainProgress(TEXT, 2, every_s=0.0)
    bar.advance(0, 2)
    bar.stop()
    assert out.getvalue() == TEXT + "\n"
    lines = err.getvalue().split("\n")
    assert lines[0] == TEXT and lines[1].startswith(TEXT + ": 2/2 images in ") and lines[2:] == [""]


def test_plain_progress_defaults_to_a_line_every_5_s_as_the_readme_says():
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    assert "a plain line every 5 s" in readme
    assert C.PLAIN_EVERY_S == 5.0 and C.PlainProgress("x", 1).every_s == 5.0


def test_plain_rate_is_the_mean_since_the_start(err, monkeypatch):
    ticks = iter([0.0, 10.0, 20.0, 20.0])  # start, then the advances and the stop
    monkeypatch.setattr(C.time, "perf_counter", lambda: next(ticks))
    bar = C.PlainProgress("d", 40, every_s=5.0)
    bar.advance(0, 5)  # 5 in 10 s
    bar.advance(0, 15)  # 20 in 20 s: 1.0 img/s on average (1.5 over the last 10 s)
    bar.stop()
    assert err.getvalue().splitlines() == [
        "d: 5/40 images, 0.5 img/s, ETA 1:10",
        "d: 20/40 images, 1.0 img/s, ETA 0:20",
        "d: 20/40 images in 0:20, 1.0 img/s",
    ]


def test_the_rate_column_says_the_finished_rate_once_done():
    from types import SimpleNamespace

    col = C._SpeedColumn("images")
    assert col.render(SimpleNamespace(finished_speed=12.0, speed=None)).plain == "12.0 img/s"
    assert col.render(SimpleNamespace(finished_speed=None, speed=3.25)).plain == "3.2 img/s"
    assert col.render(SimpleNamespace(finished_speed=None, speed=None)).plain == "? img/s"


@pytest.mark.filterwarnings('ignore:install "ipywidgets":UserWarning')
def test_a_jupyter_console_gets_the_bar(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr(C, "err_console", Console(file=buf, width=200, force_jupyter=True, force_terminal=False))
    C.set_quiet(False)
    bar = C.start_progress("localize", 2)
    try:
        assert not isinstance(bar, C.PlainProgress)
    finally:
        bar.stop()
