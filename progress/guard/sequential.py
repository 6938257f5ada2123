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
