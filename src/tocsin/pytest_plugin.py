"""tocsin's pytest plugin, registered through the ``pytest11`` entry point.

(Being written: fixtures over :mod:`tocsin.testing`.)
"""
