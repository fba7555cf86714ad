"""The README's and docs/'s relative links lead somewhere: the file exists and, with a ``#anchor``,
the file has a heading of that anchor (GitHub's rule: lower case, punctuation dropped, spaces as
hyphens)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
CODE_BLOCK = re.compile(r"^```.*?^```", re.S | re.M)


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading's text."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = CODE_BLOCK.sub("", page.read_text(encoding="utf-8"))
    return {github_anchor(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


def relative_links(page: Path) -> list[str]:
    text = CODE_BLOCK.sub("", page.read_text(encoding="utf-8"))
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def test_github_anchor_follows_githubs_rule():
    assert github_anchor("Against the peers' own loops") == "against-the-peers-own-loops"
    assert github_anchor("What `make demo` shows") == "what-make-demo-shows"
    assert github_anchor("Results, comparisons, a CI gate") == "results-comparisons-a-ci-gate"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page: Path):
    links = relative_links(page)
    assert links or page.name != "README.md", "the README links to nothing: the pattern is wrong"
    for link in links:
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        assert path.exists(), f"{page.name}: link {link!r} leads to no file"
        if anchor:
            assert anchor in anchors(path), f"{page.name}: link {link!r}: no heading #{anchor} in {path.name}"
