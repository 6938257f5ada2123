"""A person's notes on the guard's decisions: what happened and what was done about it,
kept with the evaluation (`guard_evaluations.note`), shown on the page, in the API, and as
Grafana annotations (`keeping.RolloutCollector`)."""

from __future__ import annotations

import sqlalchemy as sa

from ..exceptions import ProgressError
from ..extensions import db
from ..models import GuardEvaluation, utcnow

MAX_NOTE = 2000
MAX_ID = 2**31 - 1


class EvaluationNotFound(ProgressError):
    status, code = 404, "evaluation_not_found"


def note_evaluation(flag: str, evaluation_id: int, note: str, actor: str) -> GuardEvaluation:
    """Keep `note` with one evaluation (replacing an earlier note), and commit."""
    # Ids are the database's integers: a number past them names no evaluation.
    fits = 0 < evaluation_id <= MAX_ID
    evaluation = db.session.get(GuardEvaluation, evaluation_id) if fits else None
    if evaluation is None or evaluation.flag != flag:
        raise EvaluationNotFound(f"no evaluation {evaluation_id}", field="evaluationId")
    _keep(evaluation, note, actor)
    db.session.commit()
    return evaluation


def note_latest(flag: str, note: str, actor: str) -> GuardEvaluation | None:
    """Keep `note` with the latest evaluation, the decision a person's move answers, in
    the caller's transaction; None when the guard has not evaluated yet."""
    evaluation = db.session.scalar(
        sa.select(GuardEvaluation)
        .where(GuardEvaluation.flag == flag)
        .order_by(GuardEvaluation.id.desc())
        .limit(1)
    )
    if evaluation is not None:
        _keep(evaluation, note, actor)
    return evaluation


def _keep(evaluation: GuardEvaluation, note: str, actor: str) -> None:
    evaluation.note = note[:MAX_NOTE]
    evaluation.noted_by, evaluation.noted_at = actor, utcnow()


def recent_notes(flag: str, limit: int = 20) -> list[GuardEvaluation]:
    """The latest noted evaluations, newest first."""
    return list(
        db.session.scalars(
            sa.select(GuardEvaluation)
            .where(GuardEvaluation.flag == flag, GuardEvaluation.note.is_not(None))
            .order_by(GuardEvaluation.id.desc())
            .limit(limit)
        )
    )
