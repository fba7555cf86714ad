"""The api module's docstring example runs as written, on a tiny dataset made here."""

from __future__ import annotations

import doctest

from simpool_bench import api


def test_api_docstring_example_runs(tmp_path, make_wsol_dataset, one_thread):
    wsol = make_wsol_dataset(tmp_path / "wsol", n=5)
    globs = {"images": wsol.image_root, "metadata": wsol.metadata, "out": tmp_path / "run"}
    finder = doctest.DocTestFinder()
    [test] = [t for t in finder.find(api, globs=globs) if t.name == "simpool_bench.api"]
    assert len(test.examples) >= 6
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.failures == 0 and runner.tries == len(test.examples)
