"""``python -m tocsin`` (or ``tocsin``): the command line.

``tocsin list myapp.signals myapp.receivers`` imports the modules, then prints
each signal they define with a table of its receivers: where each was
defined, its sender filter, weak or strong, sync or async, and its options.
``--json`` prints the same for programs; ``--all`` lists every live signal.
See docs/introspection.md.

Exit codes: 0 when signals were listed, 1 when none were found or a module
failed to import, 2 for a usage error (a module or file that does not exist).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import shutil
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from . import __version__, introspect
from .dispatcher import Signal
from .introspect import ReceiverInfo
from .remote._cli import add_remote_commands

__all__ = ["main"]

Listing = list[tuple[str, list[ReceiverInfo]]]

HEADERS = ("receiver", "defined at", "sender", "held", "runs", "options")
SHORTENED = (0, 1, 2)  # the columns cut in the middle when the table is too wide
NARROWEST = 12
WIDEST_OPTION = 24  # an option longer than this (a long dispatch_uid) is cut when needed
INDENT = "  "
GAP = "  "


class UsageError(Exception):
    """A mistake on the command line: reported in one line, exit code 2."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with *argv* (default ``sys.argv[1:]``); return the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, or a usage error
        return exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
    try:
        code: int = args.command(args)
    except UsageError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (| head): not an error of ours
        # Point stdout at devnull so that the interpreter's final flush is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return code


def _parser() -> argparse.ArgumentParser:
    argv0 = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    prog = "python -m tocsin" if argv0 == "__main__.py" else "tocsin"
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Inspect tocsin signals (which receivers are connected, and where they "
        "were defined), and run workers for remote receivers.",
        epilog=f"example: {prog} list myapp.signals myapp.receivers",
    )
    parser.add_argument("--version", action="version", version=f"tocsin {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    listing = commands.add_parser(
        "list",
        help="import modules, then list their signals and receivers",
        description="Import each module (a dotted name, or the path of a .py file or a "
        "package directory; the current directory is on the import path, as with "
        "python -m), then print every signal those modules bind to a name (and tocsin's built-in "
        "signals that have receivers) with a table of its receivers, in the order send() "
        "calls them.",
    )
    listing.add_argument(
        "modules",
        nargs="*",
        metavar="MODULE_OR_FILE",
        help="what to import: myapp.signals, myapp/signals.py, myapp/",
    )
    listing.add_argument(
        "--all", action="store_true", help="list every live signal, not only those of the modules"
    )
    listing.add_argument("--json", action="store_true", help="print JSON instead of tables")
    listing.set_defaults(command=_list)
    add_remote_commands(commands, _import_for_worker, UsageError)
    return parser


# -- tocsin list ---------------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    if not args.modules and not args.all:
        raise UsageError("name at least one module or .py file to import (or pass --all)")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)  # what python -m does
    modules: list[ModuleType] = []
    for target in args.modules:
        # What a module prints when imported must not end up in the JSON.
        with contextlib.redirect_stdout(sys.stderr):
            try:
                modules.append(_import(target))
            except UsageError:
                raise
            except (Exception, SystemExit) as error:
                print(f"tocsin: importing {target} failed:", file=sys.stderr)
                _print_user_traceback(error)
                return 1
    found = _everything() if args.all else _defined_in(modules)
    listing = [(name, introspect.receivers(signal)) for name, signal in found]
    if args.json:
        print(json.dumps({"signals": [_json(n, infos) for n, infos in listing]}, indent=2))
    elif listing:
        print(_tables(listing, _width()))
    if not listing:
        where = "in the process" if args.all else "in " + ", ".join(args.modules)
        hint = "" if args.all else " (pass --all to list every live signal)"
        print(f"tocsin: no signals found {where}{hint}", file=sys.stderr)
        return 1
    return 0


def _import_for_worker(target: str) -> ModuleType | None:
    """Import what ``tocsin worker`` names, with the current directory on the
    path; ``None`` (after printing the app's traceback) if the import failed."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)  # what python -m does
    try:
        return _import(target)
    except UsageError:
        raise
    except (Exception, SystemExit) as error:
        print(f"tocsin: importing {target} failed:", file=sys.stderr)
        _print_user_traceback(error)
        return None


def _import(target: str) -> ModuleType:
    """Import a dotted module name, or the module a .py file or package directory is."""
    looks_like_path = target.endswith(".py") or "/" in target or os.sep in target
    if looks_like_path or (os.path.isdir(target) and not _is_dotted(target)):
        return _import_path(Path(target))
    if not _is_dotted(target):
        raise UsageError(f"{target!r} is neither a module name nor the path of a .py file")
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if missing and (target == missing or target.startswith(missing + ".")):
            raise UsageError(
                f"no module named {missing!r} (run tocsin from the directory that contains "
                f"it, or pass the path of its .py file)"
            ) from None
        raise


def _print_user_traceback(error: BaseException) -> None:
    """The traceback of a failed import, without tocsin's and importlib's frames."""
    tb = error.__traceback__
    while tb is not None and _is_machinery(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    lines = traceback.format_exception(type(error), error, tb or error.__traceback__)
    print("".join(lines), end="", file=sys.stderr)


def _is_machinery(filename: str) -> bool:
    return (
        filename == __file__
        or filename.startswith("<frozen importlib")
        or filename == importlib.__file__
    )


def _is_dotted(name: str) -> bool:
    return all(part.isidentifier() for part in name.split("."))


def _import_path(path: Path) -> ModuleType:
    """Import a file as Python would find it: the enclosing packages (directories with
    an ``__init__.py``) give its dotted name, and their parent goes on ``sys.path``."""
    path = path.resolve()
    if path.is_dir():
        if not (path / "__init__.py").is_file():
            raise UsageError(f"{path} is a directory without an __init__.py, not a package")
        parts, directory = [path.name], path.parent
    elif path.is_file() and path.suffix == ".py":
        parts = [] if path.stem == "__init__" else [path.stem]
        directory = path.parent
        if not parts:
            parts, directory = [directory.name], directory.parent
    else:
        raise UsageError(f"no such .py file or package directory: {path}")
    while (directory / "__init__.py").is_file():
        parts.insert(0, directory.name)
        directory = directory.parent
    name = ".".join(parts)
    if not _is_dotted(name):
        raise UsageError(f"{path} cannot be imported: {name!r} is not a valid module name")
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
    module = importlib.import_module(name)
    origin = getattr(module, "__file__", None)
    expected = path / "__init__.py" if path.is_dir() else path
    if origin is None or Path(origin).resolve() != expected:
        raise UsageError(
            f"{path} would be imported as {name!r}, but that name is already the module "
            f"from {origin or 'elsewhere'}; rename the file"
        )
    return module


def _defined_in(modules: list[ModuleType]) -> list[tuple[str, Signal]]:
    """The signals of the modules, and tocsin's built-in signals that have receivers."""
    found = {id(signal): (name, signal) for name, signal in introspect.signals(modules)}
    for name, signal in introspect.signals():
        if name.startswith("tocsin.") and id(signal) not in found and introspect.receivers(signal):
            found[id(signal)] = (name, signal)
    return sorted(found.values(), key=lambda item: item[0])


def _everything() -> list[tuple[str, Signal]]:
    """Every live signal: the named ones by name, then the others."""
    named = introspect.signals()
    known = {id(signal) for _name, signal in named}
    others = [
        (introspect.signal_name(s), s) for s in introspect.all_signals() if id(s) not in known
    ]
    return named + sorted(others, key=lambda item: item[0])


# -- output --------------------------------------------------------------------------


def _width() -> int:
    if sys.stdout.isatty():
        return max(shutil.get_terminal_size((100, 24)).columns, 60)
    return 100


def _tables(listing: Listing, width: int) -> str:
    """The signals, each with an aligned table of its receivers, fitted to *width*.

    Receivers are named in full (``module.qualname``) when that fits, else by
    their qualified name: the module is in the "defined at" column anyway.
    """
    room = width - len(INDENT)
    rows = {name: [_cells(info, full=True) for info in infos] for name, infos in listing}
    widths, longest_option = _natural_widths(rows)
    if _needed(widths, longest_option) > room:
        rows = {name: [_cells(info, full=False) for info in infos] for name, infos in listing}
        widths, longest_option = _natural_widths(rows)
    widths = _fit(widths, room, longest_option)
    lines: list[str] = []
    for name, infos in listing:
        count = len(infos)
        summary = f"{count} receiver{'s' * (count != 1)}" if count else "no receivers"
        lines.append(f"{name}  ({summary})")
        if infos:
            lines.append(_line(HEADERS, widths))
            lines.append(_line(["-" * w for w in widths], widths))
            for *cells, options in rows[name]:
                first, *more = _wrap(options, widths[-1])
                lines.append(_line([*cells, first], widths))
                lines.extend(_line([""] * len(cells) + [part], widths) for part in more)
        lines.append("")
    total = sum(len(infos) for _name, infos in listing)
    lines.append(
        f"{len(listing)} signal{'s' * (len(listing) != 1)}, {total} receiver{'s' * (total != 1)}"
    )
    return "\n".join(lines)


Row = tuple[str, str, str, str, str, list[str]]


def _cells(info: ReceiverInfo, full: bool) -> Row:
    if full:
        name = info.name
    elif info.kind == "partial":
        name = f"functools.partial({info.qualname})"
    else:
        name = info.qualname
    return (
        name,
        _where(info),
        info.sender_description,
        "weak" if info.weak else "strong",
        "async" if info.is_async else "sync",
        _options(info),
    )


def _natural_widths(rows: dict[str, list[Row]]) -> tuple[list[int], int]:
    """The width of each column unshortened (options on one line), and of the
    longest single option."""
    widths = [len(header) for header in HEADERS]
    longest_option = 1
    for signal_rows in rows.values():
        for *cells, options in signal_rows:
            for column, cell in enumerate([*cells, " ".join(options)]):
                widths[column] = max(widths[column], len(cell))
            longest_option = max([longest_option, *map(len, options)])
    return widths, longest_option


def _needed(widths: list[int], longest_option: int) -> int:
    """The width of the table with its options wrapped as much as _fit() wraps them."""
    options = min(widths[-1], max(min(longest_option, WIDEST_OPTION), len(HEADERS[-1])))
    return sum(widths[:-1]) + options + len(GAP) * (len(widths) - 1)


def _where(info: ReceiverInfo) -> str:
    if info.file is None:
        builtin = info.kind == "builtin" or info.module == "builtins"
        return "(builtin)" if builtin else "(unknown)"
    where = _relative(info.file)
    return where if info.line is None else f"{where}:{info.line}"


def _relative(file: str) -> str:
    """*file* relative to the current directory when it is inside it."""
    try:
        return str(Path(file).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return file


def _options(info: ReceiverInfo) -> list[str]:
    """connect()'s options that are not the defaults, as ``name=value``."""
    options = []
    if info.priority:
        options.append(f"priority={info.priority}")
    if info.on_commit:
        options.append("on_commit")
        if not info.robust:
            options.append("robust=False")
    if info.dispatch_uid is not None:
        options.append(f"uid={info.dispatch_uid!r}")
    return options


def _fit(widths: list[int], room: int, shortest_options: int) -> list[int]:
    """Narrow the columns until the table fits in *room*, if it can: first wrap the
    options (down to the longest one), then shorten the widest of the other
    flexible columns, then cut the options too."""
    widths = list(widths)
    excess = sum(widths) + len(GAP) * (len(widths) - 1) - room
    if excess > 0:
        longest = min(shortest_options, WIDEST_OPTION)
        wrapped = max(widths[-1] - excess, longest, len(HEADERS[-1]))
        excess -= widths[-1] - wrapped
        widths[-1] = wrapped
    while excess > 0:
        narrowable = [i for i in SHORTENED if widths[i] > NARROWEST]
        if not narrowable:
            break
        widths[max(narrowable, key=lambda i: widths[i])] -= 1
        excess -= 1
    if excess > 0:
        widths[-1] = max(widths[-1] - excess, NARROWEST)
    return widths


def _wrap(options: list[str], width: int) -> list[str]:
    """The options on as many lines of *width* as they need ("-" for none)."""
    lines: list[str] = []
    for option in options:
        if lines and len(lines[-1]) + 1 + len(option) <= width:
            lines[-1] += " " + option
        else:
            lines.append(option)
    return lines or ["-"]


def _line(cells: Sequence[str], widths: list[int]) -> str:
    padded = [_shorten(cell, width).ljust(width) for cell, width in zip(cells, widths, strict=True)]
    return (INDENT + GAP.join(padded)).rstrip()


def _shorten(text: str, width: int) -> str:
    """*text* cut in the middle to *width* characters, keeping more of its end."""
    if len(text) <= width:
        return text
    keep = width - 3
    head = keep // 3
    return text[:head] + "..." + text[len(text) - (keep - head) :]


def _json(name: str, infos: list[ReceiverInfo]) -> dict[str, Any]:
    return {"name": name, "receivers": [_json_receiver(info) for info in infos]}


def _json_receiver(info: ReceiverInfo) -> dict[str, Any]:
    uid = info.dispatch_uid
    return {
        "name": info.name,
        "module": info.module,
        "qualname": info.qualname,
        "kind": info.kind,
        "file": info.file,
        "line": info.line,
        "sender": None if info.any_sender else info.sender_description,
        "weak": info.weak,
        "async": info.is_async,
        "on_commit": info.on_commit,
        "robust": info.robust,
        "priority": info.priority,
        "dispatch_uid": uid if uid is None or isinstance(uid, str | int | float) else repr(uid),
    }


if __name__ == "__main__":
    sys.exit(main())
