"""Command-line verbs: seed, users create, token issue."""

from __future__ import annotations

import getpass
import json
import logging
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from . import guard, logs, rollout, store
from .api import spec
from .api.schemas import (
    GuardEvaluationOut,
    RolloutChangeOut,
    RolloutOut,
    RolloutPlanOut,
    TimeoutsOut,
    WatchOut,
)
from .auth import issue_local_token, token_rules
from .curriculum import CurriculumFileError, read_curriculum_file, seed_curriculum
from .exceptions import ProgressError
from .extensions import db
from .models import GuardEvaluation, RolloutPlan, User
from .worker import worker_state

# Libraries whose routine lines (a scheduler's jobs started, a flag client's fetches) would
# follow every command; their warnings still show.
QUIET_LOGGERS = ("apscheduler", "UnleashClient")


def _logs_to_stderr() -> None:
    logs.log_to_stderr()
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


@click.command("seed")
@with_appcontext
@click.argument(
    "file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
def seed_command(file: Path | None) -> None:
    """Load a curriculum file (the bundled Spanish A1 sample by default); idempotent."""
    _logs_to_stderr()
    try:
        data = read_curriculum_file(file)
    except CurriculumFileError as exc:
        raise click.ClickException(f"{file}: {exc}") from None
    counts = seed_curriculum(data)
    worker_state().reset()
    click.echo(json.dumps(counts))


users = AppGroup("users", help="Learners and admins.", callback=_logs_to_stderr)


@users.command("create")
@click.option("--email", required=True)
@click.option("--unverified", is_flag=True, help="The email is not verified (writes get 403).")
@click.option("--admin", is_flag=True, help="Issue a token with the admin role.")
def create_user(email: str, unverified: bool, admin: bool) -> None:
    """Create a user and print {id, email, token} as one JSON object."""
    if "@" not in email or len(email) > 320:
        raise click.BadParameter("not an email address", param_hint="--email")
    _require_local_tokens()
    user_id = uuid.uuid4()
    store.ensure_user(user_id, email, email_verified=not unverified)
    click.echo(json.dumps({"id": str(user_id), "email": email, "token": _token(user_id, admin)}))


DEMO_NAMESPACE = uuid.UUID("6f1d4a4e-3f7b-4c8e-9a59-1b2f0c6d8e21")


@users.command("demo")
def demo_users() -> None:
    """Create (once) a demo learner and a demo admin and print their tokens."""
    _require_local_tokens()
    for email, admin in (("learner@example.com", False), ("admin@example.com", True)):
        user_id = uuid.uuid5(DEMO_NAMESPACE, email)
        store.ensure_user(user_id, email, email_verified=True)
        role = "admin" if admin else "learner"
        click.echo(f"{role:8} {email:20} {user_id}\n         token: {_token(user_id, admin)}")


token = AppGroup("token", help="Access tokens for local use and tests.", callback=_logs_to_stderr)


@token.command("issue")
@click.argument("user_id", type=click.UUID)
@click.option("--admin", is_flag=True, help="Add the admin role.")
def issue_command(user_id: uuid.UUID, admin: bool) -> None:
    """Print an access token for an existing user."""
    if db.session.get(User, user_id) is None:
        raise click.ClickException(f"no user {user_id}")
    _require_local_tokens()
    click.echo(_token(user_id, admin))


def _require_local_tokens() -> None:
    """Refuse before anything is made when the service can't sign tokens it accepts."""
    if not token_rules().issues_locally:
        raise click.ClickException(
            "tokens come from the identity provider (PROGRESS_JWT_JWKS_URL without HS256): "
            "this service holds no key to sign one"
        )


def _token(user_id: uuid.UUID, admin: bool) -> str:
    user = db.session.scalar(sa.select(User).where(User.id == user_id))
    try:
        return issue_local_token(
            user_id, user.email, email_verified=user.email_verified, admin=admin
        )
    except ProgressError as exc:
        raise click.ClickException(exc.message) from None


rollout_group = AppGroup(
    "rollout", help="The verified path's rollout percentage.", callback=_logs_to_stderr
)


def _resolve_format(output: str | None) -> str:
    """Text for a person at a terminal, JSON for a pipe or a file (`| jq`)."""
    if output is not None:
        return output
    return "text" if sys.stdout.isatty() else "json"


FORMAT = click.option(
    "--format",
    "output",
    type=click.Choice(["text", "json"]),
    default=None,
    help="text (the default on a terminal) or JSON (the default otherwise).",
)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S %Z") if value else "never"


def _echo_state(state: rollout.RolloutState, output: str, *, with_guard: bool = False) -> None:
    if output == "json":
        _echo_json(RolloutOut.model_validate(state, from_attributes=True).model_dump(mode="json"))
        return
    changed = f"{_when(state.updated_at)} by {state.updated_by}" if state.updated_by else "never"
    click.echo(
        f"flag      {state.flag} ({state.backend})\n"
        f"rollout   {state.percentage}% of learners on the verified path\n"
        f"changed   {changed}"
    )
    if with_guard:
        plan = guard.current_plan()
        status = guard.guard_status(plan)
        click.echo(f"guard     {_guard_line(status)}")
        latest = next(iter(guard.recent_evaluations(1)), None)
        if latest is not None:
            evaluation = GuardEvaluationOut.model_validate(latest, from_attributes=True)
            click.echo(
                f"last look {evaluation.at.isoformat(timespec='seconds')}: "
                f"{evaluation.decision}\n"
                f"estimate  {evaluation.eta.text}"
            )
        _echo_watch(guard.PlanView(plan).watch)


def _echo_watch(watch: Any) -> None:
    """The watch at the last stage in a few lines (`rollout status`, `rollout plan`)."""
    answer = WatchOut.model_validate(watch, from_attributes=True)
    click.echo(f"watch     {answer.text}")
    if answer.ends_at is not None and answer.state in ("watching", "over"):
        click.echo(f"          ends {_when(answer.ends_at)}")
    if answer.baseline is not None:
        b = answer.baseline
        whole = "" if b.whole_days else " (not whole days: the time of day is not averaged out)"
        click.echo(
            f"baseline  legacy over {b.span} before the move ({b.source}){whole}: success "
            f"{_share(b.success_rate)} of {b.completions:,.0f} completions; cache updates over "
            f"the budget {_share(b.over_budget_share)} of {b.updates:,.0f}"
        )
    if answer.current is not None:
        c = answer.current
        click.echo(
            f"now       verified since the move: success {_share(c.success_rate)} of "
            f"{c.completions or 0:,.0f} completions; cache updates over the budget "
            f"{_share(c.over_budget_share)} of {c.updates or 0:,.0f}"
        )
    if answer.state == "complete":
        click.echo("complete  the legacy path may be retired")


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.3%}"


@rollout_group.command("status")
@FORMAT
def rollout_status(output: str | None) -> None:
    """Print the flag's current percentage and its last change (text: and the guard's
    latest decision with its estimate of when it will decide)."""
    _echo_state(rollout.rollout_state(), _resolve_format(output), with_guard=True)


@rollout_group.command("set")
@click.argument("percentage", type=click.IntRange(0, 100))
@click.option("--reason", required=True, help="Why: kept in the history with the change.")
@FORMAT
def rollout_set(percentage: int, reason: str, output: str | None) -> None:
    """Move the rollout to PERCENT (0-100); the change is kept in the history."""
    if not reason.strip():
        raise click.BadParameter("say why the rollout moves", param_hint="--reason")
    try:
        state = rollout.set_rollout(percentage, reason.strip()[:500], f"cli:{getpass.getuser()}")
    except rollout.RolloutError as exc:
        raise click.ClickException(str(exc)) from None
    _echo_state(state, _resolve_format(output))


NOTE = click.option(
    "--note", help="A note on the guard's latest decision, kept with its evaluation."
)


@rollout_group.command("rollback")
@click.option("--reason", required=True, help="Why: kept in the history with the change.")
@NOTE
@FORMAT
def rollout_rollback(reason: str, note: str | None, output: str | None) -> None:
    """Move every learner back to the legacy path (0%) in one step, from any stage; the
    plan follows to its first stage."""
    if not reason.strip():
        raise click.BadParameter("say why the rollout goes back", param_hint="--reason")
    actor = f"cli:{getpass.getuser()}"
    try:
        if note and note.strip():
            guard.note_latest(rollout.rollout_state().flag, note.strip(), actor)
        state = rollout.set_rollout(0, reason.strip()[:500], actor)
    except rollout.RolloutError as exc:
        raise click.ClickException(str(exc)) from None
    _echo_state(state, _resolve_format(output))


@rollout_group.command("history")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@FORMAT
def rollout_history_command(limit: int, output: str | None) -> None:
    """Print the changes, newest first (JSON: one object a line)."""
    output = _resolve_format(output)
    changes = rollout.rollout_history(limit)
    if output == "text" and not changes:
        click.echo("No change yet: every learner is on the legacy path.")
    for change in changes:
        if output == "json":
            answer = RolloutChangeOut.model_validate(change, from_attributes=True)
            _echo_json(answer.model_dump(mode="json"))
            continue
        previous = "?" if change.previous_percentage is None else change.previous_percentage
        click.echo(
            f"{_when(change.changed_at)}  {previous:>3}% -> {change.percentage:>3}%  "
            f"{change.changed_by}\n    {change.reason}"
        )


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value))


def _parse_stages(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> list[int] | None:
    if value is None:
        return None
    try:
        return guard.validate_stages([int(part) for part in value.split(",")])
    except ValueError as exc:
        raise click.BadParameter(f"{value!r}: {exc}") from None


@rollout_group.command("plan")
@click.option("--stages", callback=_parse_stages, help="Percentages from 0, rising: 0,10,100.")
@click.option("--min-stage-seconds", type=click.IntRange(0, 30 * 86400))
@click.option("--min-completions", type=click.IntRange(0, 10**7), help="On each path.")
@click.option("--min-access-checks", type=click.IntRange(0, 10**7), help="On each path.")
@click.option(
    "--auto-advance/--manual",
    default=None,
    help="Advance by itself, or mark the stage ready for product's click.",
)
@click.option("--on-failure", type=click.Choice(["rollback", "pause"]))
@click.option("--success-rate-margin", type=click.FloatRange(0, 1))
@click.option(
    "--p95-budget-seconds",
    type=click.FloatRange(0, 60, min_open=True),
    help="The cache update latency budget.",
)
@click.option(
    "--latency-margin",
    type=click.FloatRange(0, 1),
    help="Verified's share of updates over the budget may exceed legacy's by this much.",
)
@click.option(
    "--false-rollback-rate",
    type=click.FloatRange(0, 0.2, min_open=True),
    help="The tolerated chance of a wrong rollback over all the looks at a stage.",
)
@click.option(
    "--watch-hours",
    type=click.FloatRange(0, 90 * 24, min_open=True),
    help="The watch at the last stage, in hours (fractions allowed).",
)
@click.option(
    "--baseline-days",
    type=click.FloatRange(0, 90, min_open=True),
    help="Days of legacy history before the move that the watch compares with.",
)
@click.option("--enable/--disable", "enabled", default=None, help="Turn the guard on or off.")
@click.option("--pause/--resume", "paused", default=None, help="Pause or resume the plan.")
@FORMAT
def rollout_plan(output: str | None, **options: Any) -> None:
    """Print the rollout guard's plan; with options, change it first."""
    changes = {name: value for name, value in options.items() if value is not None}
    if not changes:
        _echo_plan(guard.current_plan(), _resolve_format(output))
        return
    try:
        plan = guard.update_plan(changes, f"cli:{getpass.getuser()}")
    except guard.GuardBusy as exc:
        raise click.ClickException(str(exc)) from None
    _echo_plan(plan, _resolve_format(output))


def _guard_line(status: Any) -> str:
    if status.running:
        return f"running, on {status.source} figures"
    return f"not running: {status.reason}"


def _echo_plan(plan: RolloutPlan, output: str) -> None:
    answer = RolloutPlanOut.model_validate(guard.PlanView(plan), from_attributes=True)
    if output == "json":
        _echo_json(answer.model_dump(mode="json"))
        return
    stages = " → ".join(
        f"[{p}%]" if i == answer.stage_index else f"{p}%" for i, p in enumerate(answer.stages)
    )
    state = "paused" if answer.paused else "ready for the next stage" if answer.ready else "on"
    status = answer.guard
    click.echo(
        f"plan      {'enabled' if answer.enabled else 'disabled'}, {state}; stages {stages}\n"
        f"stage     {answer.stage_percentage}% since {_when(answer.stage_started_at)}; "
        f"at least {answer.min_stage_seconds} s, {answer.min_completions} completions and "
        f"{answer.min_access_checks} access checks on each path\n"
        f"checks    success-rate margin {answer.success_rate_margin:g}, latency budget "
        f"{answer.p95_budget_seconds:g} s (margin {answer.latency_margin:g}), "
        f"false rollbacks at most {answer.false_rollback_rate:g}\n"
        f"advance   {'by itself' if answer.auto_advance else 'by a person'}; "
        f"on failure: {answer.on_failure}\n"
        f"guard     {_guard_line(status)}"
    )
    for warning in status.warnings:
        click.echo(f"warning   {warning}")
    for cost in answer.margin_costs:
        click.echo(f"margin    {cost.text}")
    click.echo(
        f"watch     {answer.watch_hours:g} h at the last stage, against legacy's "
        f"{answer.baseline_days:g} days before the move"
    )
    _echo_watch(guard.PlanView(plan).watch)


def _echo_evaluation(evaluation: GuardEvaluation) -> None:
    answer = GuardEvaluationOut.model_validate(evaluation, from_attributes=True)
    _echo_json(answer.model_dump(mode="json"))


@rollout_group.command("guard")
@click.option("--once", "mode", flag_value="once", default=True, help="Evaluate now (default).")
@click.option(
    "--loop",
    "mode",
    flag_value="loop",
    help="Evaluate every PROGRESS_GUARD_INTERVAL_S, as a sidecar (one JSON line each).",
)
def rollout_guard(mode: str) -> None:
    """Evaluate the plan against Prometheus and act on the decision; print it as JSON."""
    if not current_app.config["PROMETHEUS_URL"]:
        raise click.ClickException(
            "PROMETHEUS_URL is not set: without it the guard runs inside the service, on the "
            "instance's own counters (its schedule), not from the command line"
        )
    if mode == "once":
        run = guard.evaluate()
        if run.evaluation is None:
            _echo_json({"outcome": run.outcome, "message": run.message})
        else:
            _echo_evaluation(run.evaluation)
        if run.outcome in ("disabled", "flag_unavailable"):
            raise SystemExit(1)
        return
    interval = current_app.config["PROGRESS_GUARD_INTERVAL_S"] or 60
    while True:
        try:
            run = guard.evaluate(scheduled=True)
            if run.evaluation is not None:
                _echo_evaluation(run.evaluation)
        except Exception:  # keep watching: the next interval may succeed
            current_app.logger.exception("rollout guard evaluation failed")
        finally:
            db.session.remove()
        time.sleep(interval)


@rollout_group.command("advance")
@click.option("--reason", required=True, help="Why: kept in the history with the change.")
@NOTE
@FORMAT
def rollout_advance(reason: str, note: str | None, output: str | None) -> None:
    """Move to the next stage of the plan once the guard marked this one ready."""
    _move_stage(guard.advance_stage, reason, note, output, "say why the stage moves on")


def _move_stage(
    move: Callable[[str, str, str | None], Any],
    reason: str,
    note: str | None,
    output: str | None,
    say_why: str,
) -> None:
    """A person's move of the plan (advance or back), with its reason and note."""
    if not reason.strip():
        raise click.BadParameter(say_why, param_hint="--reason")
    try:
        plan = move(f"cli:{getpass.getuser()}", reason.strip()[:500], (note or "").strip() or None)
    except (guard.GuardBusy, guard.StageNotReady) as exc:
        raise click.ClickException(str(exc)) from None
    _echo_plan(plan, _resolve_format(output))


@rollout_group.command("back")
@click.option("--reason", required=True, help="Why: kept in the history with the change.")
@NOTE
@FORMAT
def rollout_back(reason: str, note: str | None, output: str | None) -> None:
    """Go back to the plan's previous stage (after the watch paused, say); the plan stays
    paused until a person resumes it."""
    _move_stage(guard.back_stage, reason, note, output, "say why the rollout goes back")


@rollout_group.command("complete")
@click.option(
    "--note",
    required=True,
    help="Why the watch ends by hand: kept with the guard's latest evaluation.",
)
@FORMAT
def rollout_complete(note: str, output: str | None) -> None:
    """End the watch at the last stage by hand once its hours are over and nothing failed
    (the guard holds while a test is inconclusive or there is no baseline)."""
    if not note.strip():
        raise click.BadParameter("say why the watch ends", param_hint="--note")
    try:
        plan = guard.complete_watch(f"cli:{getpass.getuser()}", note.strip())
    except (guard.GuardBusy, guard.StageNotReady) as exc:
        raise click.ClickException(str(exc)) from None
    _echo_plan(plan, _resolve_format(output))


@rollout_group.command("note")
@click.argument("evaluation_id", type=click.IntRange(1))
@click.argument("note")
def rollout_note(evaluation_id: int, note: str) -> None:
    """Keep a note with one of the guard's evaluations (a pause, the end of the watch):
    what happened and what was done about it."""
    if not note.strip():
        raise click.BadParameter("the note is empty", param_hint="NOTE")
    flag = guard.current_plan().flag
    try:
        row = guard.note_evaluation(flag, evaluation_id, note.strip(), f"cli:{getpass.getuser()}")
    except guard.EvaluationNotFound as exc:
        raise click.ClickException(exc.message) from None
    _echo_evaluation(row)


@rollout_group.command("tune")
@click.option(
    "--days",
    default=7.0,
    show_default=True,
    type=click.FloatRange(0, 90, min_open=True),
    help="How far back the histograms are read (with PROMETHEUS_URL).",
)
@FORMAT
def rollout_tune(days: float, output: str | None) -> None:
    """What the observed latencies say each timeout should be: p50 / p99 / p99.9, the
    recommendation by the rule in docs/operations.md, the share of requests each
    candidate would have cut, and the line to deploy. Changes nothing."""
    try:
        report = guard.tune_timeouts(days)
    except guard.HistogramsUnavailable as exc:
        raise click.ClickException(exc.message) from None
    answer = TimeoutsOut.model_validate(report, from_attributes=True)
    if _resolve_format(output) == "json":
        _echo_json(answer.model_dump(mode="json"))
        return
    click.echo(f"Timeouts from the latency histograms over {answer.window} ({answer.source}).")
    for advice in answer.settings:
        recommended = (
            "keep the current value"
            if advice.recommended_ms is None
            else f"{advice.recommended_ms:g} ms"
        )
        click.echo(
            f"\n{advice.setting}: now {advice.current_ms:g} ms; recommended {recommended}\n"
            f"  from      {advice.histogram}: {advice.observations:,.0f} observations; "
            f"p50 {_ms(advice.p50_ms)}, p99 {_ms(advice.p99_ms)}, p99.9 {_ms(advice.p999_ms)}\n"
            f"  rule      {advice.rule}, rounded up and clamped"
        )
        for candidate in advice.candidates:
            over = (
                "-"
                if candidate.share_over is None
                else f"{candidate.share_over:.4%} ({candidate.requests_over:,.1f} requests)"
            )
            label = f"  {candidate.label}" if candidate.label else ""
            click.echo(f"  at {candidate.value_ms:>8g} ms  over it: {over}{label}")
        for warning in advice.warnings:
            click.echo(f"  note      {warning}")
        if advice.buckets_needed:
            bounds = ", ".join(f"{b:g}" for b in advice.buckets_needed)
            click.echo(f"  buckets   add {bounds} (s) to place it")
        click.echo(f"  deploy    {advice.line}")
    click.echo(f"\n{answer.note}")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:g} ms"


@rollout_group.command("evaluations")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@FORMAT
def rollout_evaluations(limit: int, output: str | None) -> None:
    """Print the guard's evaluations, newest first (JSON: one object a line; text: a
    readable summary with each check)."""
    output = _resolve_format(output)
    rows = guard.recent_evaluations(limit)
    if output == "text" and not rows:
        click.echo("No evaluation yet.")
    for row in rows:
        if output == "json":
            _echo_evaluation(row)
            continue
        evaluation = GuardEvaluationOut.model_validate(row, from_attributes=True)
        acted = "acted" if evaluation.acted else "no action"
        click.echo(
            f"{evaluation.at.isoformat(timespec='seconds')}  #{evaluation.id}  "
            f"stage {evaluation.stage} ({evaluation.percentage}%)  "
            f"window {evaluation.window_seconds} s  {evaluation.decision} ({acted})\n"
            f"    {evaluation.reason}\n"
            f"    estimate: {evaluation.eta.text}"
        )
        if evaluation.note:
            click.echo(f"    note by {evaluation.noted_by}: {evaluation.note}")
        for check in evaluation.checks:
            figures = " ".join(f"{k}={v}" for k, v in check.figures.items())
            threshold = " ".join(f"{k}={v}" for k, v in check.threshold.items())
            click.echo(f"    {check.status:12} {check.name:24} {check.detail}")
            click.echo(f"    {'':12} {'':24} {figures}  [{threshold}]")
            if check.test is not None:
                test = check.test
                click.echo(
                    f"    {'':12} {'':24} {test.method}: difference {test.statistic:+.4%}, "
                    f"bound [{test.lower:+.4%}, {test.upper:+.4%}], "
                    f"margin {test.margin:.4%}, evidence {test.evidence:,.0f}"
                )


@click.command("openapi")
@with_appcontext
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Default: stdout."
)
def openapi_command(output: Path | None) -> None:
    """Write the OpenAPI document (what GET /api/v1/openapi.json answers), for generators."""
    text = json.dumps(spec.document(), indent=2, ensure_ascii=False) + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")


def init_app(app: Flask) -> None:
    app.cli.add_command(openapi_command)
    app.cli.add_command(seed_command)
    app.cli.add_command(users)
    app.cli.add_command(token)
    app.cli.add_command(rollout_group)
