"""The code in docs/**/*.md is run, and quoted source is checked against src/.

Every ```python block of a page is executed, in order, in one namespace per
page, so a later block can use what an earlier one defined; the assertions in
the examples are the tests. A block is skipped when its fence says
```python no-test, or when the line before it is ``<!-- no-test -->``.

A block whose preceding line is ``<!-- quote: src/tocsin/dispatcher.py -->``
is a quotation of real code: it is not run, but its lines must appear in that
file, in order and contiguously (indentation and blank lines aside). A line
holding only ``...`` stands for lines left out.
"""

from __future__ import annotations

import importlib.machinery
import re
import sys
import types
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

import tocsin.signals
from tocsin import Signal, oncommit
from tocsin.contrib.sqlalchemy import _base as sqlalchemy_base
from tocsin.contrib.sqlalchemy import disable_model_signals

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# Where the documentation site is published (mkdocs.yml's site_url): the README, which is
# also the PyPI description, links there rather than to relative paths PyPI cannot follow.
SITE = "https://tocsin.readthedocs.io/en/stable/"
PAGES = sorted(DOCS.rglob("*.md"))
PAGE_IDS = [str(p.relative_to(DOCS)) for p in PAGES]

NO_TEST = "<!-- no-test -->"
QUOTE = re.compile(r"<!--\s*quote:\s*(\S+)\s*-->")
LINK = re.compile(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)")


class Block(NamedTuple):
    page: Path
    line: int  # 1-based line number of the block's first line of code
    info: str  # what follows the opening ``` (e.g. "python no-test")
    before: str  # the line before the opening fence, stripped
    code: str

    @property
    def language(self) -> str:
        words = self.info.split()
        return words[0] if words else ""

    @property
    def quoted_file(self) -> str | None:
        match = QUOTE.fullmatch(self.before)
        return match.group(1) if match else None

    @property
    def runs(self) -> bool:
        return (
            self.language == "python"
            and "no-test" not in self.info.split()
            and self.before != NO_TEST
            and self.quoted_file is None
        )


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of *page*."""
    found: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    opening: tuple[int, str, str] | None = None  # (line index, info, line before)
    for index, line in enumerate(lines):
        stripped = line.strip()
        if opening is None:
            if stripped.startswith("```"):
                before = lines[index - 1].strip() if index else ""
                opening = (index, stripped[3:].strip(), before)
        elif stripped == "```":
            start, info, before = opening
            code = "\n".join(lines[start + 1 : index]) + "\n"
            found.append(Block(page, start + 2, info, before, code))
            opening = None
    assert opening is None, f"{page.name}:{opening[0] + 1}: code block is never closed"
    return found


def _stripped(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _find(needle: list[str], haystack: list[str], start: int) -> int:
    """Index of the first run of *needle* in *haystack* at or after *start*, or -1."""
    for index in range(start, len(haystack) - len(needle) + 1):
        if haystack[index : index + len(needle)] == needle:
            return index
    return -1


QUOTED = [b for page in PAGES for b in blocks(page) if b.quoted_file is not None]


@pytest.fixture
def builtin_signals_restored() -> Iterator[None]:
    """Whatever a page connects to the built-in signals is gone after it, even if it
    fails; so are the model signals it enabled and the scope finders it added."""
    signals = [s for s in vars(tocsin.signals).values() if isinstance(s, Signal)]
    saved = [list(s.receivers) for s in signals]
    enabled = set(sqlalchemy_base.ENABLED)
    finders = list(oncommit._finders)
    yield
    for signal, receivers in zip(signals, saved, strict=True):
        signal.receivers = receivers
    for registry in set(sqlalchemy_base.ENABLED) - enabled:
        disable_model_signals(registry)
    oncommit._finders[:] = finders


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
@pytest.mark.usefixtures("builtin_signals_restored")
def test_examples_run(page: Path) -> None:
    """Every runnable block of a page runs without error, in order, in one namespace."""
    # A real module, so that what resolves names through sys.modules (SQLAlchemy's
    # Mapped[...] annotations, dataclasses, pickling) works as in a user's file.
    module = types.ModuleType("docs." + page.stem)
    module.__file__ = str(page)
    module.__spec__ = importlib.machinery.ModuleSpec(module.__name__, None, origin=str(page))
    sys.modules[module.__name__] = module
    try:
        for block in blocks(page):
            if block.runs:
                # Pad with newlines so that tracebacks point at the Markdown line.
                source = "\n" * (block.line - 1) + block.code
                code = compile(source, str(page), "exec", dont_inherit=True)
                exec(code, module.__dict__)
    finally:
        del sys.modules[module.__name__]


@pytest.mark.parametrize("block", QUOTED, ids=[f"{b.page.name}:{b.line}" for b in QUOTED] or None)
def test_quoted_code_matches_source(block: Block) -> None:
    """A quotation of tocsin's code is still what the code says."""
    assert block.quoted_file is not None
    source = ROOT / block.quoted_file
    assert source.is_file(), f"{block.page.name}:{block.line}: no file {block.quoted_file}"
    haystack = _stripped(source.read_text(encoding="utf-8"))
    chunks: list[list[str]] = [[]]
    for line in _stripped(block.code):
        if line == "...":
            chunks.append([])
        else:
            chunks[-1].append(line)
    position = 0
    for chunk in filter(None, chunks):
        found = _find(chunk, haystack, position)
        assert found >= 0, (
            f"{block.page.name}:{block.line}: quoted code no longer matches "
            f"{block.quoted_file}; first line of the missing part: {chunk[0]!r}"
        )
        position = found + len(chunk)


def test_pages_have_examples() -> None:
    """The extractor finds the pages and their examples (so the tests above test something)."""
    names = {str(p.relative_to(DOCS)) for p in PAGES}
    expected = {"index.md", "quickstart.md", "coming-from-django.md", "how-it-works.md"}
    assert expected | {"reference/index.md", "reference/cli.md"} <= names
    for name in ("quickstart.md", "reference/cli.md"):
        assert any(b.runs for b in blocks(DOCS / name)), f"{name} has no runnable example"
    assert QUOTED, "how-it-works.md quotes no code"


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_relative_links_resolve(page: Path) -> None:
    """Links to other Markdown files point at files that exist."""
    text = page.read_text(encoding="utf-8")
    for target in LINK.findall(text):
        if "://" in target:
            continue
        assert (page.parent / target).resolve().is_file(), f"{page.name}: broken link {target}"


def _slug(heading: str) -> str:
    """A heading's anchor, as Python-Markdown's toc extension makes it."""
    text = re.sub(r"[`*]", "", heading)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", text).strip().lower())


def test_readme_links_resolve_on_pypi() -> None:
    """README.md, the PyPI description, has no relative link or image (PyPI would not
    resolve them), and its links to the documentation site name pages and headings
    that docs/ has."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    assert not [t for t in targets if "://" not in t], "README.md: relative links"
    assert SITE in text
    for target in targets:
        if not target.startswith(SITE):
            continue
        path, _, anchor = target.removeprefix(SITE).partition("#")
        page = DOCS / (f"{path.rstrip('/')}.md" if path.rstrip("/") else "index.md")
        if not page.is_file():
            page = DOCS / path / "index.md"
        assert page.is_file(), f"README.md links to {target}: docs/ has no such page"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), flags=re.M)
            assert anchor in {_slug(h) for h in headings}, f"README.md: no anchor {target}"


# Public modules without a page of their own, and why.
NO_PAGE = {
    "tocsin.contrib": "a package for the integrations, each a module with a page",
    "tocsin.remote.transports": "re-exported by tocsin.remote",
    "tocsin.remote.transports.base": "re-exported by tocsin.remote",
    "tocsin.remote.transports.memory": "re-exported by tocsin.remote",
    "tocsin.remote.transports.redis": "re-exported by tocsin.remote",
    # Django's places for manage.py commands: commands, documented in docs/django.md
    "tocsin.contrib.django.management": "Django's package for management commands",
    "tocsin.contrib.django.management.commands": "Django's package for management commands",
    "tocsin.contrib.django.management.commands.tocsin_signals": "manage.py tocsin_signals",
}
# Modules Django finds by convention, documented in docs/django.md: the app's manage.py
# commands and its migrations.
DJANGO_CONVENTIONS = ("tocsin.contrib.django.management", "tocsin.contrib.django.migrations")


def test_every_public_module_has_a_reference_page() -> None:
    """Each public module of tocsin is rendered by a page of docs/reference/ (``::: name``),
    so that the generated API reference leaves none out."""
    source = ROOT / "src"
    modules = {
        ".".join(path.relative_to(source).with_suffix("").parts).removesuffix(".__init__")
        for path in (source / "tocsin").rglob("*.py")
    }
    public = {
        m
        for m in modules
        if not any(part.startswith("_") for part in m.split("."))
        and not m.startswith(DJANGO_CONVENTIONS)
    }
    rendered = {
        match
        for page in (DOCS / "reference").glob("*.md")
        for match in re.findall(r"^::: ([\w.]+)$", page.read_text(encoding="utf-8"), flags=re.M)
    }
    assert public - set(NO_PAGE) == rendered
