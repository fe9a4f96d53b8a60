"""The ``tocsin`` logger, made on first use: ``import logging`` is a good part
of what ``import tocsin`` would cost, and most programs never log through it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging


def logger() -> logging.Logger:
    import logging

    return logging.getLogger("tocsin")
