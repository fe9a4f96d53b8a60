"""Compatibility suite: the same scenarios run against django.dispatch and tocsin."""
