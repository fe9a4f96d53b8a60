"""An app whose models module connects receivers with tocsin's options, as
projects do at import time (tests/contrib/django/test_apps.py sets it up in a
fresh process)."""
