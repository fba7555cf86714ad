"""``python -m simpool_bench.cli``: the console script."""

from . import main

main()
