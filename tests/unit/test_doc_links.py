"""The docs a clone carries are enough: every link in the README and docs/
that is not a web address points at a file (and heading anchor) of this
repository, never at a sibling checkout such as ../shared/."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)\s]+)\)")
DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def _anchors(page: Path) -> set[str]:
    text = page.read_text("utf-8")
    explicit = set(re.findall(r'<a id="([^"]+)"></a>', text))
    headings = {
        re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", text, re.M)
    }
    return explicit | headings


def test_every_local_link_in_the_docs_resolves_inside_the_repository() -> None:
    broken = []
    for page in DOCS:
        for target in LINK.findall(page.read_text("utf-8")):
            if re.match(r"[a-z]+:", target):
                continue  # a web address (or mailto:)
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            inside = resolved.is_relative_to(REPO)
            if not inside or not resolved.exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
            elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
                broken.append(f"{page.relative_to(REPO)}: {target} (no such heading)")
    assert broken == []


def test_no_doc_sends_readers_to_a_file_a_clone_does_not_have() -> None:
    for page in DOCS:
        text = page.read_text("utf-8")
        assert "shared/" not in text and "SPEC.md" not in text, page.relative_to(REPO)
