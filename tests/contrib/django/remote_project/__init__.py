"""A Django project run in subprocesses by tests/contrib/django/test_commands.py:
``manage.py tocsin_worker`` against the real Redis server, with the outbox and
model instances. The environment says where things are (see settings.py)."""
