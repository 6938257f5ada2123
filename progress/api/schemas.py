"""Request and response models: they validate requests and generate the OpenAPI document."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)

from .. import receipts
from ..guard import validate_stages
from ..guard.checks import CheckStatus
from ..guard.decision import Decision, OnFailure
from ..guard.eta import unknown
from ..guard.sequential import Verdict
from ..json_model import JsonModel
from ..path_names import PathName


class Strict(JsonModel):
    # Strict: "1" is not an integer and unknown fields are refused.
    model_config = ConfigDict(strict=True, extra="forbid")


class Answer(JsonModel):
    """A JSON answer. No client sends one: the service builds it by its Python names."""

    model_config = ConfigDict(validate_by_name=True)


def _whole_number(value: Any) -> Any:
    # JSON has one number type: 75.0 is the integer 75 (as JSON Schema says); true is not.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


WholeNumber = Annotated[int, BeforeValidator(_whole_number)]


def _storable(value: Any) -> Any:
    # JSON can carry NUL and unpaired surrogates; PostgreSQL text can hold neither.
    if not isinstance(value, str):
        return value
    return (
        value.replace("\x00", "\ufffd").encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    )


StorableText = Annotated[str, BeforeValidator(_storable)]


def _iso(value: datetime) -> str:
    return value.isoformat()


# The contract writes a UTC time with its offset, "+00:00", where pydantic would write "Z".
Timestamp = Annotated[
    datetime,
    PlainSerializer(_iso, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization"),
]


class ErrorBody(Answer):
    code: str
    message: str
    field: str | None = None


class ErrorOut(Answer):
    """Every error: {"error": {"code", "message"}}, with the offending field on a 400."""

    error: ErrorBody


class WordOut(Answer):
    term: str  # in the course's language
    translation: str


class LessonOut(Answer):
    id: str
    title: str
    xp: int  # what completing it grants, once
    words: list[WordOut]


class ModuleOut(Answer):
    id: str
    title: str
    lessons: list[LessonOut]


class CurriculumOut(Answer):
    modules: list[ModuleOut]


class CompletedLessonOut(Answer):
    module_id: str
    lesson_id: str
    completed_at: Timestamp


class LessonAccessOut(Answer):
    module_id: str
    lesson_id: str
    accessible: bool


class ProgressOut(Answer):
    version: int
    completed: list[CompletedLessonOut]
    lessons: list[LessonAccessOut]
    xp_total: int  # the learner's XP at `version`


class CompletionHeaders(JsonModel):
    """A client names each completion attempt (a UUID, say) and sends the same key when it
    retries it: the retry is answered with the XP the attempt earned. Optional."""

    model_config = ConfigDict(extra="ignore")

    idempotency_key: str | None = Field(
        default=None,
        alias="Idempotency-Key",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._:-]+$",
    )


class CompletionOut(Answer):
    success: bool
    db_updated: bool
    cache_updated: bool
    version: int
    path: PathName
    # Granted by this request: the lesson's XP the first time, 0 for a lesson already
    # completed, except a retry with the first attempt's Idempotency-Key (its XP again).
    xp_earned: int
    xp_total: int  # the learner's total, this completion included
    # A WAL position this completion's commit can't be past (null: unknown, e.g. the embedded
    # SQLite). Send it back as minPosition with minVersion=version: a read that needs the
    # version then goes to a replica only if it has replayed this far, else to the primary
    # at once, instead of waiting for the replica. Opaque: send it back as it came.
    position: int | None


class ReviewWordOut(Answer):
    term: str
    translation: str
    module_id: str
    lesson_id: str  # the completed lesson that taught it


class ReviewOut(Answer):
    """The words of every completed lesson, in the course's order, as of `version`."""

    version: int
    words: list[ReviewWordOut]
    source: Literal["cache", "db"]
    path: PathName


class AccessQuery(JsonModel):
    # Query strings are text: lax ints ("5"), but only whole non-negative numbers. Unknown
    # parameters (cache-busters, tracking) are ignored.
    model_config = ConfigDict(extra="ignore")

    min_version: int = Field(default=0, ge=0, le=2**53)
    # The `position` of the completion answer that gave minVersion (ignored without it).
    min_position: int | None = Field(default=None, ge=0, le=2**63 - 1)


class AccessOut(Answer):
    accessible: bool
    source: Literal["cache", "db"]
    cache_age_ms: int | None  # null when the DB answered
    version: int
    path: PathName
    # Signed by the service when the lesson is locked; null when it is accessible. Send it
    # with the lock-screen report.
    lock_receipt: str | None


class ProgressQuery(AccessQuery):
    pass


class ReviewQuery(AccessQuery):
    pass


class LockScreenIn(Strict):
    module_id: str = Field(min_length=1, max_length=64)
    lesson_id: str = Field(min_length=1, max_length=64)
    # The `lockReceipt` of the access answer that locked: it says which path answered, from
    # which version, the minVersion sent, and when the read began and ended.
    lock_receipt: str = Field(
        min_length=receipts.MIN_LENGTH, max_length=receipts.MAX_LENGTH, pattern=receipts.PATTERN
    )


class LockScreenOut(Answer):
    false_lock: bool


class HealthOut(Answer):
    status: Literal["ok"]


class ReadyOut(Answer):
    status: Literal["ready", "unready"]
    checks: dict[str, str]


class RolloutOut(Answer):
    flag: str
    percentage: int
    backend: Literal["embedded", "unleash"]
    updated_at: Timestamp | None
    updated_by: str | None


# A person's note on a guard decision: kept with the evaluation, shown on the page and
# as a Grafana annotation.
Note = Annotated[StorableText, Field(min_length=1, max_length=2000)]


class RolloutIn(Strict):
    percentage: WholeNumber = Field(ge=0, le=100)
    reason: StorableText = Field(min_length=1, max_length=500)
    # Kept with the guard's latest evaluation: what a rollback answers, say.
    note: Note | None = None


class AdvanceIn(Strict):
    """Why the stage moves on: kept in the history with the change; a note, kept with the
    guard's latest evaluation."""

    reason: StorableText = Field(min_length=1, max_length=500)
    note: Note | None = None


class BackIn(Strict):
    """Why the rollout goes back a stage: kept in the history; a note, kept with the
    guard's latest evaluation (the pause it answers)."""

    reason: StorableText = Field(min_length=1, max_length=500)
    note: Note | None = None


class NoteIn(Strict):
    """A person's note on one guard decision (or the end of the watch)."""

    note: Note


class RolloutChangeOut(Answer):
    percentage: int
    previous_percentage: int | None
    reason: str
    changed_by: str
    changed_at: Timestamp
    backend: Literal["embedded", "unleash"]


class RolloutHistoryOut(Answer):
    changes: list[RolloutChangeOut]


class PathFigures(Answer):
    completions: float
    completion_errors: float
    completion_success_rate: float | None
    false_lock_screens: float
    staleness_incidents: float
    cache_hit_rate: float | None
    cache_mismatches: float
    access_checks: float
    review_sets: float
    stale_review_sets: float  # caught by the double check (verified) or the audit (legacy)


class PathFiguresOut(Answer):
    """Counted since each worker started, summed over this instance's workers."""

    legacy: PathFigures
    verified: PathFigures


# -- the rollout guard ---------------------------------------------------------------------


Percentage = Annotated[int, Field(ge=0, le=100), BeforeValidator(_whole_number)]
# Distinct percentages in any order; kept rising, with 0 (where a rollback goes) first.
Stages = Annotated[
    list[Percentage],
    Field(min_length=2, max_length=20, json_schema_extra={"uniqueItems": True}),
    AfterValidator(validate_stages),  # the one rule, shared with the CLI
]
Count = Annotated[int, Field(ge=0, le=10**7), BeforeValidator(_whole_number)]
Seconds = Annotated[int, Field(ge=0, le=30 * 86400), BeforeValidator(_whole_number)]


class GuardStatusOut(Answer):
    """Whether the guard evaluates by itself, from which figures, and why not."""

    running: bool
    source: Literal["prometheus", "instance"] | None
    reason: str | None  # in plain words, when not running
    warnings: list[str]


class MarginCostOut(Answer):
    """How long a healthy stage takes to decide with this margin at the current traffic."""

    margin: float
    eta_seconds: int | None
    text: str


class WatchBaselineOut(Answer):
    """The legacy path's figures over the baseline's days before the move to 100%."""

    start: Timestamp
    end: Timestamp  # the move
    source: Literal["prometheus", "evaluations"]
    span: str  # "7 days"
    whole_days: bool  # a fraction of a day leaves the time of day in the comparison
    completions: float
    errors: float
    success_rate: float | None
    updates: float
    over_budget_share: float | None  # cache updates over the latency budget
    days: list[dict[str, Any]]  # each day's completions and errors (from Prometheus)


class WatchCurrentOut(Answer):
    """The verified path's figures since the watch began, at the latest evaluation."""

    at: Timestamp
    completions: float | None
    errors: float | None
    success_rate: float | None
    updates: float | None
    over_budget_share: float | None


class WatchOut(Answer):
    """The watch at the plan's last stage: the verified path against the legacy path's
    history, for `watchHours`; clean, the rollout is complete."""

    state: Literal["not_started", "watching", "paused", "over", "complete"]
    length_seconds: int
    started_at: Timestamp | None
    ends_at: Timestamp | None
    seconds_left: int | None
    completed_at: Timestamp | None
    baseline: WatchBaselineOut | None
    current: WatchCurrentOut | None
    text: str


# Built from the plan (progress.models.RolloutPlan) and `guard.plan_view` by attributes.
class RolloutPlanOut(Answer):
    flag: str
    stages: list[int]
    stage_index: int = Field(alias="stage")  # index into stages
    stage_percentage: int | None
    stage_started_at: Timestamp | None  # None until the rollout reached a stage
    min_stage_seconds: int
    min_completions: int  # on each path
    min_access_checks: int  # on each path
    auto_advance: bool
    on_failure: OnFailure
    success_rate_margin: float
    p95_budget_seconds: float  # the cache update latency budget
    latency_margin: float
    false_rollback_rate: float
    watch_hours: float  # the watch at the last stage
    baseline_days: float  # the legacy history it compares with, before the move
    enabled: bool
    paused: bool
    ready: bool
    updated_at: Timestamp | None  # None while the plan is not stored
    updated_by: str | None
    guard: GuardStatusOut
    margin_costs: list[MarginCostOut]
    watch: WatchOut


class RolloutPlanIn(Strict):
    """Only the fields sent change; `paused: false` resumes a paused plan."""

    model_config = ConfigDict(allow_inf_nan=False)

    stages: Stages | None = None
    min_stage_seconds: Seconds | None = None
    min_completions: Count | None = None
    min_access_checks: Count | None = None
    auto_advance: bool | None = None
    on_failure: OnFailure | None = None
    success_rate_margin: Annotated[float, Field(ge=0, le=1)] | None = None
    p95_budget_seconds: Annotated[float, Field(gt=0, le=60)] | None = None
    # Verified's share of updates over the budget may exceed legacy's by this much.
    latency_margin: Annotated[float, Field(ge=0, le=1)] | None = None
    # The tolerated chance of a wrong rollback over all the looks at one stage.
    false_rollback_rate: Annotated[float, Field(gt=0, le=0.2)] | None = None
    # The watch at the last stage, in hours (fractions allowed), and the days of legacy
    # history before the move it compares with (whole days average out the time of day).
    watch_hours: Annotated[float, Field(gt=0, le=90 * 24)] | None = None
    baseline_days: Annotated[float, Field(gt=0, le=90)] | None = None
    enabled: bool | None = None
    paused: bool | None = None


class SequentialTestOut(Answer):
    """A sequential test at one evaluation: chart `lower`/`upper` against `margin` over
    the evaluations of a stage to see the bound close in."""

    method: Literal["mSPRT"]
    counting: str  # what the shares count: "errors", "updates over the budget"
    statistic: float  # verified's share minus legacy's
    lower: float  # the confidence sequence's bound on that difference at this look
    upper: float
    margin: float
    confidence: float
    evidence: float  # outcomes counted on both paths so far
    verdict: Verdict
    # Verified outcomes still to count before the test decides, at today's shares (0 once
    # decided; None when it cannot tell). Evaluations kept before it have none.
    needed: int | None = None


class GuardCheckOut(Answer):
    name: str
    status: CheckStatus
    detail: str  # what the check found, in words
    figures: dict[str, Any]
    threshold: dict[str, Any]
    # Only a check with a sequential test has one: the others' JSON has no `test`.
    test: SequentialTestOut | None = Field(default=None, exclude_if=lambda test: test is None)


class GuardEtaOut(Answer):
    """When the guard expects to be able to advance or act, at the current traffic."""

    seconds: int | None
    reason: str | None  # why it cannot tell, when seconds is None
    limited_by: str | None  # "min_stage_time", a check's name, or None
    rate_per_minute: float | None  # the limiting check's verified outcomes a minute
    needed: int | None  # outcomes the limiting check still needs
    text: str  # one sentence


def _eta_kept(value: Any) -> Any:
    # Evaluations kept before the estimate existed have none: "cannot tell".
    return value if value is not None else unknown("kept before the guard made estimates").as_json()


# Built from a kept evaluation (progress.models.GuardEvaluation) by its attributes.
class GuardEvaluationOut(Answer):
    id: int
    at: Timestamp
    flag: str
    stage: int
    percentage: int
    window_seconds: int
    checks: list[GuardCheckOut]
    decision: Decision
    reason: str
    acted: bool
    instance: str
    eta_seconds: int | None  # eta.seconds
    eta: Annotated[GuardEtaOut, BeforeValidator(_eta_kept)]
    note: str | None = None  # a person's note on this decision
    noted_by: str | None = None
    noted_at: Timestamp | None = None


class GuardEvaluationsOut(Answer):
    evaluations: list[GuardEvaluationOut]


class GuardEvaluationsQuery(JsonModel):
    model_config = ConfigDict(extra="ignore")  # unknown query parameters are ignored

    limit: int = Field(default=20, ge=1, le=500)


class TimeoutsQuery(JsonModel):
    model_config = ConfigDict(extra="forbid")

    days: float = Field(default=7, gt=0, le=90, allow_inf_nan=False)


class TimeoutCandidateOut(Answer):
    value_ms: float
    share_over: float | None  # the share of the histogram's requests above this value
    requests_over: float | None
    label: str  # "current", "recommended" or ""


class TimeoutAdviceOut(Answer):
    """One timeout setting against the latency histogram that governs it."""

    setting: str
    current_ms: float
    histogram: str
    observations: float
    p50_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    recommended_ms: float | None  # None: no observations, keep the current value
    rule: str
    line: str  # the setting line to deploy
    candidates: list[TimeoutCandidateOut]
    warnings: list[str]
    buckets_needed: list[float]  # bucket bounds (s) the recommendation needs


class TimeoutsOut(Answer):
    """What the observed latencies say the timeouts should be; nothing is changed."""

    source: Literal["prometheus", "instance"]
    days: float
    window: str
    settings: list[TimeoutAdviceOut]
    note: str


class RolloutChartsQuery(JsonModel):
    model_config = ConfigDict(extra="forbid")

    range: Literal["stage", "day"] = "stage"


class PathValues(Answer):
    legacy: list[float | None]
    verified: list[float | None]


class ChartMarkerOut(Answer):
    at: Timestamp
    kind: Literal["rollout", "guard"]
    label: str
    by: str
    detail: str


class StageStepOut(Answer):
    percentage: int
    since: Timestamp | None  # None: from the start
    by: str | None
    reason: str | None


class GuardBoundOut(Answer):
    """A guard check's sequential test over the evaluations in the range: the bound closes
    in on the statistic as evidence grows; the check passes once it clears the margin."""

    check: str
    counting: str  # what the shares count, e.g. "errors"
    times: list[float]
    statistic: list[float]  # verified's share minus legacy's
    lower: list[float]
    upper: list[float]
    margin: list[float]


class RolloutChartsOut(Answer):
    """The two paths side by side over time: one time axis (Unix seconds) and, per figure, a
    value per path at each time (None where there is none)."""

    range: Literal["stage", "day"]
    source: Literal["prometheus", "evaluations"]
    note: str | None
    from_: Timestamp = Field(alias="from")
    to: Timestamp
    step_seconds: int | None
    times: list[float]
    figures: dict[
        Literal[
            "falseLockScreens",
            "completionSuccessRate",
            "cacheUpdateP95Seconds",
            "accessChecksPerMinute",
        ],
        PathValues,
    ]
    markers: list[ChartMarkerOut]
    stages: list[StageStepOut]
    bounds: list[GuardBoundOut]  # empty until the guard's evaluations carry sequential tests


class RolloutImpactQuery(JsonModel):
    model_config = ConfigDict(extra="forbid")

    percentage: int = Field(ge=0, le=100)


class RolloutImpactOut(Answer):
    """How many known learners change path if the rollout moves to `toPercentage`."""

    from_percentage: int
    to_percentage: int
    learners: int
    moving: int
    exact: bool
    to_path: PathName
