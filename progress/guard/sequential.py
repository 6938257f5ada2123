"""The guard's sequential test: is the verified path's share of bad outcomes (failed
completions, cache updates over the latency budget) higher than the legacy path's by more
than a margin? Checked at every evaluation of a stage, so the test has to stay right however
often it is looked at.

It is the mixture sequential probability ratio test (mSPRT) for a difference of two
proportions, as in Johari, Pekelis and Walsh, "Always valid inference" (2017): with a normal
mixture of width `tau` over the difference, the likelihood ratio against "the difference is
d" is a martingale under d, so by Ville's inequality it exceeds 1/alpha at *any* look with
probability at most alpha. The differences it never rejects form a confidence sequence
[lower, upper] that covers the true difference at every look at once with confidence
1 - alpha. One width suits one size of difference: a narrow mixture sees a small
regression soonest but needs many looks for a gross one on a small sample. So the bound is
the intersection of the sequences for a few widths, each at alpha / (how many): by the
union bound all of them cover the difference at once with confidence 1 - alpha. Hence:

- worse: lower > margin (a wrong "worse" over all the looks of a stage has chance <= alpha);
- not worse: upper <= margin (a wrong "not worse" has chance <= alpha as well);
- otherwise inconclusive: keep looking.

The variance uses each share shrunk towards one half by one bad and one good outcome
(Agresti and Caffo): with rare errors the raw share is often 0, and a zero variance would
make a few errors look certain. The simulation (`progress.guard.simulation`) measures the
error rates this gives; it does not assume them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["worse", "not_worse", "inconclusive"]


@dataclass(frozen=True)
class Comparison:
    """The verified path's bad share against the legacy path's, with the bound so far."""

    verified_bad: float
    verified_total: float
    legacy_bad: float
    legacy_total: float
    estimate: float  # verified's share minus legacy's
    lower: float  # the confidence sequence for that difference, at this look
    upper: float
    margin: float
    alpha: float
    verdict: Verdict

    @property
    def confidence(self) -> float:
        return 1 - self.alpha

    @property
    def evidence(self) -> float:
        """Outcomes counted on both paths so far."""
        return self.verified_total + self.legacy_total


def _share(bad: float, total: float) -> float:
    return bad / total if total > 0 else 0.0


def _variance(bad: float, total: float) -> float:
    shrunk = (bad + 1) / (total + 2)
    return shrunk * (1 - shrunk) / (total + 2)


def radius(variance: float, alpha: float, tau: float) -> float:
    """Half the width of the mSPRT's confidence sequence for a normal estimate with this
    variance: the differences d with likelihood ratio below 1/alpha."""
    t2 = tau * tau
    return math.sqrt(
        variance * (variance + t2) / t2 * math.log((variance + t2) / (variance * alpha * alpha))
    )


def compare(
    verified_bad: float,
    verified_total: float,
    legacy_bad: float,
    legacy_total: float,
    *,
    margin: float,
    alpha: float,
    taus: Sequence[float],
) -> Comparison:
    """Is verified's bad share above legacy's by more than `margin`, at confidence 1 - alpha?
    `taus`: the sizes of difference the test is most sensitive to (the mixtures' widths)."""
    estimate = _share(verified_bad, verified_total) - _share(legacy_bad, legacy_total)
    variance = _variance(verified_bad, verified_total) + _variance(legacy_bad, legacy_total)
    spread = min(radius(variance, alpha / len(taus), tau) for tau in taus)
    lower, upper = max(estimate - spread, -1.0), min(estimate + spread, 1.0)
    verdict: Verdict = (
        "worse" if lower > margin else "not_worse" if upper <= margin else "inconclusive"
    )
    return Comparison(
        verified_bad,
        verified_total,
        legacy_bad,
        legacy_total,
        estimate,
        lower,
        upper,
        margin,
        alpha,
        verdict,
    )


def spread(
    verified_bad: float,
    verified_total: float,
    legacy_bad: float,
    legacy_total: float,
    *,
    alpha: float,
    taus: Sequence[float],
) -> float:
    """Half the width of the bound `compare` draws around the estimate."""
    variance = _variance(verified_bad, verified_total) + _variance(legacy_bad, legacy_total)
    return min(radius(variance, alpha / len(taus), tau) for tau in taus)


# The first look at which the bound passes the margin tends to come while the estimate
# wanders to the favourable side: about a third of a standard error, measured with
# progress.guard.simulation (none: estimates too long by half; two thirds: too short).
LEAD = 0.35


def needed(result: Comparison, taus: Sequence[float], prior: float = 0.5) -> float | None:
    """Verified outcomes still to count before the bound leaves the margin behind, on the
    same bound as `compare`, with today's split between the paths. The difference assumed
    is the estimate once the bound excludes 0 (a difference is evident), else none at all:
    both paths at their pooled share, which is what a healthy stage is. `prior` pseudo-bad
    outcomes keep a share of 0 (no error yet) from promising an instant decision; the
    bound is taken to pass `LEAD` standard errors early.
    0 once decided; None when a path has no outcomes, or the difference assumed is the
    margin itself (no sample settles it)."""
    if result.verdict != "inconclusive":
        return 0.0
    v_total, l_total = result.verified_total, result.legacy_total
    if v_total <= 0 or l_total <= 0:
        return None
    if result.lower > 0 or result.upper < 0:
        difference = result.estimate
        legacy_share = _share(result.legacy_bad, l_total)
        verified_share = _share(result.verified_bad, v_total)
    else:
        difference = 0.0
        pooled = (result.verified_bad + result.legacy_bad + prior) / (v_total + l_total + 2 * prior)
        legacy_share = verified_share = pooled
    gap = abs(result.margin - difference)
    if gap <= 0:
        return None

    def short_of(scale: float) -> float:
        """The bound's reach beyond the gap with the counts grown `scale` times (< 1 once
        it passes): its half-width less the early lead, over the gap."""
        counts = (
            verified_share * v_total * scale,
            v_total * scale,
            legacy_share * l_total * scale,
            l_total * scale,
        )
        width = spread(*counts, alpha=result.alpha, taus=taus)
        sd = math.sqrt(_variance(*counts[:2]) + _variance(*counts[2:]))
        return max(width - LEAD * sd, 1e-300) / gap

    # The reach falls about as 1/sqrt(scale) (a little slower, for the log in the radius),
    # so scaling by its square converges in a few steps, each closing ~90% of the distance.
    scale = 1.0
    for _ in range(60):
        ratio = short_of(scale)
        if abs(ratio - 1) < 0.005 or (ratio < 1 and scale == 1.0):
            break
        scale = max(scale * ratio * ratio, 1.0)
        if scale > 1e12:  # beyond any traffic: say so rather than promise
            return None
    return v_total * (scale - 1)
