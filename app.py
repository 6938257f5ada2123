"""WSGI entry point: `gunicorn -c gunicorn.conf.py app:app` or `flask --app app ...`."""

import sys

from progress import create_app
from progress.config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    if "gunicorn" in sys.modules:
        raise  # gunicorn reports it and stops: a worker that can't boot halts the arbiter
    sys.exit(f"configuration error: {exc}")  # the command line: one line on stderr, exit 1
