"""A griffe extension: tocsin's reST docstrings, as the Markdown mkdocstrings renders.

tocsin's docstrings are written for ``help()`` and Sphinx-minded readers (as
blinker's are): ``:param x:`` fields, which griffe's Sphinx parser reads, and
three reST constructs that Markdown does not know. This turns them into
Markdown once the package is loaded, before anything is rendered:

* roles, ``:class:`Signal```, ``:meth:`~Signal.send```, become cross-references
  (``[`Signal`][tocsin.dispatcher.Signal]``), resolved from the docstring's
  own scope as Python resolves names; a target outside tocsin (``asyncio.Task``)
  becomes plain code, and one inside tocsin that does not exist stops the
  build (``mkdocs build --strict``);
* ``::`` literal blocks become fenced code blocks;
* simple tables (``====  ====``) become lists;
* ``docs/<page>.md`` becomes a link to that page of the site.

The sources keep their docstrings as they are; only the site sees the result.
"""

from __future__ import annotations

import ast
import functools
import inspect
import re
import textwrap
from pathlib import Path
from typing import Any

import griffe
from markdown.extensions.toc import slugify

ROLE = re.compile(
    r":(?:py:)?(class|meth|func|mod|attr|data|exc|obj):`(~?)([^`<]+?)(?:\s*<([^>]+)>)?`"
)
PAGE = re.compile(r"(?<![\w/\[])(?<!\]\()docs/((?:frameworks/)?[a-z-]+)\.md(?:#([a-z0-9-]+))?")
TABLE_BORDER = re.compile(r"^\s*=+(\s+=+)+\s*$")

logger = griffe.logger


class RestDocstrings(griffe.Extension):
    """Rewrite every docstring of a package once it is loaded."""

    def __init__(self, reference: str = "reference") -> None:
        # The folder of the API pages, under docs/: links to guides go up from it.
        self.up = "../" * len([part for part in reference.split("/") if part])

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name != "tocsin":
            return
        _built_signals(pkg)
        _private_bases(pkg)
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = self.convert(obj.docstring.value, obj)
        _check_exports(pkg)

    def convert(self, text: str, obj: griffe.Object) -> str:
        text = _options_fields(text, obj)
        text = _fields_last(text)
        text = _literal_blocks(text)
        text = _tables(text)
        return _outside_code(text, lambda part: self._inline(part, obj))

    def _inline(self, text: str, obj: griffe.Object) -> str:
        text = ROLE.sub(lambda m: _role(m, obj), text)
        text = PAGE.sub(self._page, text)
        return text.replace("\\ ", "")  # reST's "``x``\ s": no space in Markdown either

    def _page(self, match: re.Match[str]) -> str:
        page, anchor = match.group(1), match.group(2)
        # MkDocs checks the links of the pages, not those of rendered docstrings.
        if anchor not in _anchors(page):
            logger.warning("a docstring links to %s, which docs/ does not have", match.group(0))
        target = f"{self.up}{page}.md" + (f"#{anchor}" if anchor else "")
        return f"[{match.group(0)}]({target})"


DOCS = Path(__file__).resolve().parent.parent


@functools.cache
def _anchors(page: str) -> frozenset[str | None]:
    """The anchors of a page's headings, as the toc extension makes them; and None
    (the page itself) if the page exists."""
    path = DOCS / f"{page}.md"
    if not path.is_file():
        return frozenset()
    headings = re.findall(r"^#+ (.+)$", path.read_text(encoding="utf-8"), flags=re.M)
    return frozenset([None, *(slugify(re.sub(r"[`*]", "", h), "-") for h in headings)])


def _built_signals(pkg: griffe.Module) -> None:
    """tocsin.signals makes each signal with ``_signal(doc)``, which sets its
    ``__doc__`` (``help(post_save)`` shows it): that text is its docstring."""
    module = pkg["signals"]
    for attribute in module.attributes.values():
        value = attribute.value
        if (
            attribute.docstring is None
            and isinstance(value, griffe.ExprCall)
            and str(value.function) == "_signal"
            and isinstance(value.arguments[0], str)
        ):
            text = ast.literal_eval(value.arguments[0])
            attribute.docstring = griffe.Docstring(
                inspect.cleandoc(text), parent=attribute, lineno=attribute.lineno
            )


def _private_bases(pkg: griffe.Module) -> None:
    """A public class shows the public members it inherits from a private base
    (``Worker.stop()`` from ``_Base``): the reference does not show inherited
    members otherwise, and the private base has no page of its own."""
    for obj in _walk(pkg):
        if not isinstance(obj, griffe.Class) or obj.name.startswith("_"):
            continue
        for base in obj.resolved_bases:
            if base.package is not pkg or not base.name.startswith("_"):
                continue
            for name, member in base.members.items():
                if name not in obj.members and not name.startswith("_"):
                    obj.set_member(name, griffe.Alias(name, member, parent=obj))


def _check_exports(pkg: griffe.Module) -> None:
    """Every name a public module exports has a docstring: the reference shows only
    what has one (``show_if_no_docstring: false``), so an undocumented export
    would be missing from it without a word."""
    modules = [pkg]
    while modules:
        module = modules.pop()
        modules.extend(
            m for m in module.modules.values() if not m.is_alias and not _private(m.path)
        )
        for name in module.exports or ():
            member = module.members.get(name)
            try:
                documented = member is not None and member.docstring is not None
            except griffe.AliasResolutionError:
                continue  # re-exported from elsewhere (unittest.mock.ANY): said in prose
            if not documented:
                logger.warning(
                    "%s.%s has no docstring: the API reference leaves it out", module.path, name
                )


FIELD = re.compile(
    r"^:(param|parameter|arg|argument|key|keyword|type|returns?|rtype|raises?|"
    r"var|ivar|cvar|vartype)\b[^:]*:"
)


def _fields_last(text: str) -> str:
    """Move the paragraphs that follow a field list before it.

    In reST a field list ends at the first paragraph that is not indented; griffe's
    Sphinx parser would make that paragraph part of the last field instead.
    """
    lines = text.split("\n")
    prose: list[str] = []
    fields: list[str] = []
    in_field = False
    for line in lines:
        if FIELD.match(line):
            in_field = True
            fields.append(line)
        elif in_field and (line.startswith((" ", "\t")) or not line.strip()):
            fields.append(line)
        else:
            in_field = False
            prose.append(line)
    if not fields:
        return text
    while prose and not prose[-1].strip():
        prose.pop()
    while fields and not fields[-1].strip():
        fields.pop()
    return "\n".join([*prose, "", *fields])


def _walk(obj: griffe.Object) -> Any:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)  # type: ignore[arg-type]


def _role(match: re.Match[str], obj: griffe.Object) -> str:
    kind, short, text, explicit = match.groups()
    target = (explicit or text).strip()
    if explicit is None:
        text = target.rsplit(".", 1)[-1] if short else target
    text = text.strip()
    if kind in {"meth", "func"} and not text.endswith(")"):
        text += "()"
    path = _resolve(target, obj)
    if path is None:
        return f"`{text}`"
    return f"[`{text}`][{path}]"


def _resolve(target: str, obj: griffe.Object) -> str | None:
    """The path of what *target* names in *obj*'s docstring, looked up as Python
    looks names up (the object, then its parents); None outside tocsin."""
    first, _, rest = target.partition(".")
    root = obj.package
    base: Any = None
    scope: Any = obj
    while scope is not None and base is None:  # the object, its classes, its module
        base = scope.members.get(first)
        scope = None if scope.is_module else scope.parent
    if base is None and first == root.name:
        base = root
    if base is None:
        return None
    path = (base.target_path if base.is_alias else base.path) + (f".{rest}" if rest else "")
    if path.split(".")[0] != root.name:
        return None  # the standard library's or another package's
    try:
        found = root[path.partition(".")[2]] if "." in path else root
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        logger.warning("%s: its docstring names %s, which tocsin does not have", obj.path, target)
        return None
    if _private(found.path):  # not on the site, unless a public module re-exports it
        return _public_names(root).get(found.path)
    return path


def _private(path: str) -> bool:
    return any(part.startswith("_") and not part.endswith("__") for part in path.split("."))


def _public_names(root: griffe.Module) -> dict[str, str]:
    """Where the public modules re-export private objects: private path -> public path."""
    found: dict[str, str] = {}
    modules = [root]
    while modules:
        module = modules.pop()
        for member in module.members.values():
            if _private(member.path):
                continue
            if not member.is_alias:
                if isinstance(member, griffe.Module):
                    modules.append(member)
            elif member.target_path.startswith(f"{root.name}."):  # type: ignore[union-attr]
                found.setdefault(member.target_path, member.path)  # type: ignore[union-attr]
    return found


def _options_fields(text: str, obj: griffe.Object) -> str:
    """``:param x:`` fields for the keys of a ``**options: Unpack[SomeTypedDict]``
    -> a list of the options, with a link to the TypedDict: griffe looks for
    such a parameter in the signature, and would find none."""
    try:
        parameters = obj.parameters  # type: ignore[attr-defined]
    except AttributeError:
        return text
    for parameter in parameters:
        annotation = parameter.annotation
        if parameter.kind is not griffe.ParameterKind.var_keyword or not isinstance(
            annotation, griffe.ExprSubscript
        ):
            continue
        if annotation.canonical_name != "Unpack":
            continue
        options = _resolve(str(annotation.slice), obj)
        if options is None:
            continue
        keys = [
            name
            for name, member in obj.package[options.partition(".")[2]].members.items()
            if member.is_attribute and name not in parameters
        ]
        field = re.compile(rf"^:param ({'|'.join(map(re.escape, keys))}):", re.M)
        if not keys or not field.search(text):
            continue
        name = options.rsplit(".", 1)[-1]
        first = field.search(text).start()  # type: ignore[union-attr]
        text = text[:first] + f"Options, keyword-only ([`{name}`][{options}]):\n\n" + text[first:]
        text = field.sub(r"- ``\1``:", text)
    return text


def _outside_code(text: str, change: Any) -> str:
    """Apply *change* to the text outside fenced code blocks."""
    parts = re.split(r"(^\s*```.*?^\s*```\s*$)", text, flags=re.M | re.S)
    return "".join(part if index % 2 else change(part) for index, part in enumerate(parts))


def _literal_blocks(text: str) -> str:
    """reST ``text::`` + an indented block -> ``text:`` + a fenced block."""
    lines = text.split("\n")
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.rstrip().endswith("::"):
            out.append(line)
            index += 1
            continue
        indent = len(line) - len(line.lstrip())
        head = line.rstrip()[:-2].rstrip()
        if head.strip():
            out.append(head + ("" if head.endswith(":") else ":"))
        index += 1
        block: list[str] = []
        while index < len(lines) and (
            not lines[index].strip() or len(lines[index]) - len(lines[index].lstrip()) > indent
        ):
            block.append(lines[index])
            index += 1
        while block and not block[-1].strip():
            block.pop()
        code = textwrap.dedent("\n".join(b for b in block)).strip("\n")
        language = "text" if code.lstrip().startswith(("$", "tocsin ", "pip ")) else "python"
        pad = " " * indent
        out.extend(["", f"{pad}```{language}"])
        out.extend(f"{pad}{c}" if c else "" for c in code.split("\n"))
        out.extend([f"{pad}```", ""])
    return "\n".join(out)


def _tables(text: str) -> str:
    """reST simple tables of two columns -> a list, one item per row."""
    lines = text.split("\n")
    out: list[str] = []
    index = 0
    while index < len(lines):
        if not TABLE_BORDER.match(lines[index]):
            out.append(lines[index])
            index += 1
            continue
        border = lines[index]
        second = border.index("=", border.index(" ", border.index("=")))
        index += 1
        rows: list[list[str]] = []
        while index < len(lines) and not TABLE_BORDER.match(lines[index]):
            row = lines[index]
            left, right = row[:second].strip(), row[second:].strip()
            if left or not rows:
                rows.append([left, right])
            else:
                rows[-1][1] += " " + right
            index += 1
        index += 1  # the closing border
        out.extend(f"- {left}: {right}" for left, right in rows)
    return "\n".join(out)
