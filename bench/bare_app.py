"""The baseline: a bare Flask app with one JSON endpoint, served like the service.

`gunicorn -c gunicorn.conf.py bench.bare_app:app` — same workers, threads and settings, no
auth, no database, no cache: what Flask and gunicorn alone cost per request.
"""

from __future__ import annotations

from flask import Flask

app = Flask(__name__)
app.json.sort_keys = False  # as the service does

# The same shape and size as an access-check answer.
ANSWER = {"accessible": True, "source": "cache", "cacheAgeMs": 12, "version": 3, "path": "legacy"}


@app.get("/bare")
def bare() -> dict:
    return dict(ANSWER)
