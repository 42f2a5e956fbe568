"""The WSGI entry point: `gunicorn --chdir examples/python/django_mem app.wsgi`. The URLconf (and
with it the views and their ~40 MB of state) is loaded here, at import, not at the first
request, so that gunicorn --preload builds it once in the master."""
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings")
application = get_wsgi_application()
get_resolver().url_patterns
