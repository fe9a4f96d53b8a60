"""Transports carry remote events between processes; see :mod:`tocsin.transports.base`."""
