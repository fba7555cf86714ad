"""caller: the command a run records (the command line, or the API function a user called)."""

from __future__ import annotations

from simpool_bench import caller


def test_command_line_names_the_program_by_its_file_and_quotes_arguments():
    argv = ["/opt/venv/bin/simpool-bench", "localize", "--out", "my dir", "--data", "a'b"]
    assert caller.command_line(argv) == "simpool-bench localize --out 'my dir' --data 'a'\"'\"'b'"
    assert caller.command_line([]) is None


def test_the_outer_command_stays_and_is_forgotten_on_leaving():
    assert caller.recorded_command() is None
    with caller.recording("simpool-bench localize"):
        with caller.recording("simpool_bench.api.run_localize"):
            assert caller.recorded_command() == "simpool-bench localize"
        assert caller.recorded_command() == "simpool-bench localize"
    assert caller.recorded_command() is None
    with caller.recording(None):
        assert caller.recorded_command() is None


def test_called_as_records_the_name_and_keeps_the_function_s_name_and_doc():
    @caller.called_as("simpool_bench.api.f")
    def f(x: int) -> tuple[int, str | None]:
        """Doc of f."""
        return x, caller.recorded_command()

    assert f(3) == (3, "simpool_bench.api.f") and caller.recorded_command() is None
    assert (f.__name__, f.__doc__) == ("f", "Doc of f.")
    with caller.recording("simpool-bench suite run"):
        assert f(1) == (1, "simpool-bench suite run")
