"""Transports carry remote events between processes; see :mod:`tocsin.remote.transports.base`."""
