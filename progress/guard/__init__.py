"""The rollout guard: judges the verified path against the legacy path on Prometheus'
figures, and advances, holds, pauses or rolls back the rollout by itself (docs/guard.md).

One evaluation (`evaluation.evaluate`), read top to bottom:
1. take the guard's lock (`lock`: PostgreSQL, an advisory lock held by this transaction;
   SQLite, the embedded single process, a lock in this process), so one process judges at
   a time;
2. read the plan (`plan`, the `rollout_plans` row) and the flag's percentage; if a person
   moved the rollout to another stage of the plan, the plan follows and that stage's clock
   starts;
3. query Prometheus over the stage's window (time since the stage began, at least
   PROGRESS_GUARD_MIN_WINDOW_S): `figures`;
4. judge each check pass / fail / inconclusive / no_data (`checks`) and decide
   (`decision`), both pure; at the plan's last stage the comparisons are made against the
   legacy path's history before the move for the plan's watch hours (`watch`), and a clean
   watch completes the rollout;
5. act through `rollout.set_rollout(..., actor="guard")`, so the history shows the move
   with its reason and figures, and keep the evaluation (`guard_evaluations`) in the same
   commit. `schedule` runs this in every worker, every PROGRESS_GUARD_INTERVAL_S.

What a failure does:
- false lock screens shown on the verified path: any at all is evidence by itself, whatever
  the sample size, so it acts as the plan says (`on_failure`: roll back to 0%, or pause);
- a worse completion success rate: learners' completions fail on the verified path, which
  is as bad for them as a false lock, so it also acts as the plan says, once a sequential
  test (`sequential`: an mSPRT confidence sequence, right however often it is looked at)
  is confident, at 1 - the plan's false_rollback_rate, that verified is worse by more than
  the margin;
- slower verified cache updates (the same test on the share of updates over the latency
  budget) or a circuit breaker that stayed open: the verified path stays right while slow
  (its update is bounded and the breaker sends reads to the DB), so rolling back would only
  move learners back to the path that shows false lock screens. These pause (no further
  stage) for a person to look.
A test not yet confident either way holds ("inconclusive, holding"); too little data or
none holds; only a stage whose tests show the verified path within the margins, on the
minimum sample, after the stage's time, advances. Prometheus unreachable holds, logs a
warning, and changes nothing. How often this is wrong is measured by `simulation`
(`make guard-sim`, docs/guard.md).
"""

from .evaluation import evaluate, recent_evaluations
from .keeping import exposition
from .lock import GuardBusy
from .notes import EvaluationNotFound, note_evaluation, note_latest
from .plan import (
    StageNotReady,
    advance_stage,
    back_stage,
    complete_watch,
    current_plan,
    update_plan,
    validate_stages,
)
from .schedule import init_app
from .status import PlanView, guard_status
from .tuning import HistogramsUnavailable, TimeoutsReport, tune_timeouts

__all__ = [
    "EvaluationNotFound",
    "GuardBusy",
    "HistogramsUnavailable",
    "PlanView",
    "StageNotReady",
    "TimeoutsReport",
    "advance_stage",
    "back_stage",
    "complete_watch",
    "current_plan",
    "evaluate",
    "exposition",
    "guard_status",
    "init_app",
    "note_evaluation",
    "note_latest",
    "recent_evaluations",
    "tune_timeouts",
    "update_plan",
    "validate_stages",
]
