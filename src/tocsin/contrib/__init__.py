"""Integrations with other libraries and protocols.

Each module here is imported on its own (``from tocsin.contrib.asgi import ...``);
nothing is re-exported from :mod:`tocsin`.
"""
