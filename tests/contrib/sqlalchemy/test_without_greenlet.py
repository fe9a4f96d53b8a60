"""The sync integration without greenlet, which SQLAlchemy 2.1 no longer installs
(``sqlalchemy[asyncio]`` does): each test runs in a fresh interpreter whose
``import greenlet`` fails, as in ``pip install 'tocsin[sqlalchemy]'``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# Hides greenlet from the interpreter: importing it fails, find_spec() finds nothing.
WITHOUT_GREENLET = "import sys; sys.modules['greenlet'] = None\n"

MODELS = """
from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from tests.contrib.sqlalchemy.models import Base, Pizza
from tocsin.contrib.sqlalchemy import Outbox, enable_model_signals
from tocsin.signals import post_save

enable_model_signals(Base)
engine = create_engine("sqlite://")
Base.metadata.create_all(engine)
"""


def _run_without_greenlet(code: str) -> None:
    script = WITHOUT_GREENLET + MODELS + textwrap.dedent(code)
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_the_sync_integration_imports_and_sends_without_greenlet() -> None:
    """A sync Session sends post_save, and on-commit receivers run after the
    commit, without importing SQLAlchemy's asyncio extension."""
    _run_without_greenlet(
        """
        saved, committed = [], []
        post_save.connect(
            lambda instance, **kw: saved.append(instance.name), sender=Pizza, weak=False
        )
        post_save.connect(
            lambda instance, **kw: committed.append(instance.name),
            sender=Pizza, weak=False, on_commit=True,
        )
        with Session(engine) as session:
            session.add(Pizza(name="marinara"))
            session.flush()
            assert saved == ["marinara"] and committed == [], (saved, committed)
            session.commit()
        assert committed == ["marinara"], committed
        assert "sqlalchemy.ext.asyncio" not in sys.modules
        """
    )


def test_an_outbox_on_a_sync_engine_needs_no_greenlet() -> None:
    """Outbox() tells a sync Engine from an AsyncEngine without importing the latter."""
    _run_without_greenlet(
        """
        outbox = Outbox(engine)
        outbox.create()
        assert outbox.engine is engine
        try:
            Outbox("sqlite://")  # type: ignore[arg-type]
        except TypeError as error:
            assert "Engine or AsyncEngine" in str(error), error
        else:
            raise AssertionError("Outbox() took a string")
        assert "sqlalchemy.ext.asyncio" not in sys.modules
        """
    )
