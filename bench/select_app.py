"""The cold access check's baseline: the service itself with one more route that runs
`select 1` through the same engine (same pool, pre-ping and session handling) and answers
JSON, under the same gunicorn settings: `gunicorn -c gunicorn.conf.py bench.select_app:app`.
"""

from __future__ import annotations

from progress import create_app

from .cold import with_select_one

app = with_select_one(create_app())
