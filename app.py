"""WSGI entry point: `gunicorn -c gunicorn.conf.py app:app` or `flask --app app ...`."""

from progress import create_app

app = create_app()
