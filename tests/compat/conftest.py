"""Fixtures of the compatibility suite.

``impl`` runs a test once against ``django.dispatch`` and once against tocsin
(test ids ``[django]`` and ``[tocsin]``); both runs assert the same expected
results, so a test that passes for ``django`` and fails for ``tocsin`` is a
difference from Django.

The test modules import ``_support`` first, which skips them cleanly when
Django 6.1 is not installed; the fixtures import it lazily for that reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ._support import Impl


@pytest.fixture(params=["django", "tocsin"], ids=["django", "tocsin"])
def impl(request: pytest.FixtureRequest) -> Impl:
    """``django.dispatch`` or tocsin: each test using it runs once with each."""
    from ._support import IMPLS

    return IMPLS[request.param]


@pytest.fixture(params=[False, True], ids=["uncached", "cached"])
def use_caching(request: pytest.FixtureRequest) -> bool:
    """``Signal(use_caching=...)``: a test using it runs without and with Django's cache."""
    value: bool = request.param
    return value
