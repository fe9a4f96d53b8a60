"""Settings of the test project; the environment gives the database file
(TOCSIN_TEST_DB), the Redis server (TOCSIN_REDIS_URL), the stream
(TOCSIN_TEST_STREAM) and the file the worker's receiver appends to (TOCSIN_TEST_OUT)."""

import os

SECRET_KEY = "tocsin-tests"
USE_TZ = True
INSTALLED_APPS = ["tocsin.contrib.django", "remote_project.shop"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("TOCSIN_TEST_DB", ":memory:"),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
TOCSIN_REMOTE = "remote_project.remote:remote"
