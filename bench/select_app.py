"""The cold access check's baseline: the service itself with one more route that runs
`select 1` through the same engine (same pool, pre-ping and session handling) and answers
JSON, under the same gunicorn settings: `gunicorn -c gunicorn.conf.py bench.select_app:app`.
"""

from __future__ import annotations

import sqlalchemy as sa

from progress import create_app
from progress.extensions import db

app = create_app()


@app.get("/bench/select-1")
def select_one() -> dict:
    value = db.session.execute(sa.text("select 1")).scalar_one()
    db.session.rollback()  # as a read in the store ends its transaction
    return {"value": value}
