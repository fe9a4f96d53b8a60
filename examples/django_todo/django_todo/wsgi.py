"""The Todo example's WSGI application (``runserver`` uses it too)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_todo.settings")

application = get_wsgi_application()
