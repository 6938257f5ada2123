"""How long the model searches: a bounded CI profile inside `make test`, the long run behind
`make prove`, and the budget of each mutation hunt. A seed per run (MODEL_SEED, else a fresh
one) is printed, so a failure can be replayed; found examples are kept under test-artifacts/
and replayed first by the next run."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "model"
PROFILES = {
    # make test: about a minute on the verified path
    "ci": {"max_examples": 80, "stateful_step_count": 40},
    # make prove: tens of thousands of steps
    "prove": {"max_examples": 1000, "stateful_step_count": 50},
}
# A mutation's hunt stops at its first counterexample; shrinking it is what costs (every
# candidate replays real requests), so CI shrinks briefly and make prove longer.
# 1,000: the position's choices (the client's, the replica's, the announcements') spread the
# search, and the hardest hunts (no double check, the position trusted) took 400-570 examples
# in some runs; a hunt stops at its first counterexample, so the margin costs only when needed.
MUTATION_HUNT = {"max_examples": 1000, "stateful_step_count": 20}
SHRINK_SECONDS = {"ci": 10, "prove": 150}


def profile_name() -> str:
    name = os.environ.get("MODEL_PROFILE", "ci")
    if name not in PROFILES:
        raise ValueError(f"MODEL_PROFILE must be one of {', '.join(PROFILES)}, got {name!r}")
    return name


def run_seed() -> int:
    return int(os.environ.get("MODEL_SEED") or secrets.randbelow(2**32))


# The suite's mutation hunts start from one seed, so that CI searches as the run before it
# did: from fresh seeds the hardest hunts sometimes needed 885 of their 1,000 examples, and a
# hunt that runs out fails the suite. From this one the slowest took 440 (of 1,000). make
# prove, and MODEL_SEED, hunt from fresh seeds.
SUITE_HUNT_SEED = 1


def hunt_seed() -> int:
    if os.environ.get("MODEL_SEED") or profile_name() != "ci":
        return run_seed()
    return SUITE_HUNT_SEED


def model_settings(**limits: int) -> settings:
    return settings(
        **limits,
        deadline=None,  # a step is a few real requests and queries
        suppress_health_check=list(HealthCheck),
        database=DirectoryBasedExampleDatabase(ARTIFACTS / "examples"),
        report_multiple_bugs=False,
        print_blob=True,
    )
