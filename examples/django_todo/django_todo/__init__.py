"""The Todo example's project: settings, URLs, WSGI."""
