"""The Todo app, tocsin's showcase: ``python -m todo`` migrates the database and
serves it. See todo/web.py for the application, todo/panel.py for the live
signal panel."""

from .settings import Settings
from .web import create_app

__all__ = ["Settings", "create_app"]
