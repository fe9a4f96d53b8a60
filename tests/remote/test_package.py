"""tocsin.remote is one package with one public surface, and its modules import in one direction."""

from __future__ import annotations

import ast
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import tocsin.remote

PACKAGE = Path(tocsin.remote.__file__).parent


def test_the_public_surface() -> None:
    """Everything the feature offers is imported from tocsin.remote."""
    assert sorted(tocsin.remote.__all__) == [
        "AsyncMemoryTransport",
        "AsyncRedisStreamsTransport",
        "AsyncTransport",
        "AsyncWorker",
        "Attempts",
        "Batch",
        "Consumer",
        "DeadLetter",
        "DeadLetters",
        "Event",
        "ForgedEventError",
        "Group",
        "JSONSerializer",
        "MemoryTransport",
        "Message",
        "Outbox",
        "Pending",
        "Propagator",
        "PublishError",
        "RedisStreamsTransport",
        "Remote",
        "SerializationError",
        "Serializer",
        "Transport",
        "TransportError",
        "Worker",
        "WorkerOptions",
        "WorkerStats",
        "add_propagator",
        "current_event",
    ]
    for name in tocsin.remote.__all__:
        assert getattr(tocsin.remote, name) is not None


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The tocsin.remote modules *path* imports when it is imported (not lazily, not for
    type checkers only)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    [*package.split(".")[: len(package.split(".")) - node.level + 1], *[base]]
                ).rstrip(".")
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if _exists(candidate) else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {module for module in found if module.startswith("tocsin.remote.") and module != name}


def _exists(module: str) -> bool:
    relative = Path(*module.split(".")[2:])
    return (PACKAGE / relative).with_suffix(".py").is_file() or (PACKAGE / relative).is_dir()


def test_no_module_of_the_package_imports_one_that_imports_it() -> None:
    """The import graph inside tocsin.remote has no cycle (remote <-> worker had one)."""
    graph = {
        _module_name(path): _imports(path)
        for path in PACKAGE.rglob("*.py")
        if path.name != "__init__.py"
    }
    assert "tocsin.remote._remote" in graph
    assert "tocsin.remote._worker" not in graph["tocsin.remote._remote"]
    try:
        list(TopologicalSorter(graph).static_order())
    except CycleError as error:  # pragma: no cover - the failure message
        raise AssertionError(f"import cycle: {error.args[1]}") from None


def test_importing_it_does_not_import_redis() -> None:
    """redis-py is imported only when a Redis transport is asked for."""
    code = (
        "import sys, tocsin.remote; assert 'redis' not in sys.modules; "
        "tocsin.remote.RedisStreamsTransport; assert 'redis' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
