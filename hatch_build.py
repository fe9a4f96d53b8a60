"""hatchling's build hook: tocsin's optional compiled send path.

Builds ``src/tocsin/_speedups.c`` (``tocsin._speedups``, see tocsin/_compiled.py)
into the wheel, which is then tagged for this interpreter and platform. When it
cannot be built (no C compiler, no Python headers, a compiler error, or
``TOCSIN_PURE_PYTHON`` set to a non-empty value other than ``0``), the wheel is
built without it, pure Python (``py3-none-any``), as it was before: tocsin works
the same, only slower to send, and the build says why in a warning. For an
editable install the module is built in place, beside the sources.

setuptools, a build dependency of this hook only (pyproject.toml), compiles it:
it knows each platform's compiler and flags, and Python's own configuration.
"""

from __future__ import annotations

import os
import shutil
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

MODULE = "tocsin._speedups"
SOURCE = "src/tocsin/_speedups.c"


class SpeedupsBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        source = Path(self.root, SOURCE)
        in_place = source.with_name("_speedups" + (sysconfig.get_config_var("EXT_SUFFIX") or ".so"))
        if version == "editable":
            in_place.unlink(missing_ok=True)  # never leave an earlier build behind
        if os.environ.get("TOCSIN_PURE_PYTHON", "") not in ("", "0"):
            self.app.display_info("tocsin: TOCSIN_PURE_PYTHON is set: pure-Python build")
            return
        self._temporary = tempfile.mkdtemp(prefix="tocsin-speedups-")
        try:
            built = compile_extension(source, Path(self._temporary))
        except Exception as exc:  # any failure: the pure-Python package, as promised
            self.app.display_warning(
                f"tocsin: the compiled send path was not built ({type(exc).__name__}: {exc}); "
                "building pure Python, which works the same, only slower to send."
            )
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version == "editable":
            shutil.copy2(built, in_place)  # an editable install imports src/tocsin
        else:
            build_data["force_include"][str(built)] = f"tocsin/{built.name}"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        temporary = getattr(self, "_temporary", None)
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


def compile_extension(source: Path, work: Path) -> Path:
    """Compile *source* into ``tocsin._speedups`` under *work*; the built file's path."""
    from setuptools import Distribution, Extension
    from setuptools.command.build_ext import build_ext

    extension = Extension(MODULE, [str(source)])
    command = build_ext(Distribution({"name": "tocsin", "ext_modules": [extension]}))
    command.build_lib = str(work / "lib")
    command.build_temp = str(work / "temp")
    command.ensure_finalized()
    command.run()
    return Path(command.get_ext_fullpath(MODULE))
