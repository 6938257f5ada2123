"""The verified path's guarantee over every interleaving the model reaches (docs/proof.md):
a hypothesis state machine drives three workers of the real service on real PostgreSQL, with
a lagging replica, parked cache updates and announcements delivered late, reordered or never,
and checks every answer against the primary. The same model must find a counterexample on
the legacy path and on the verified path with each defence switched off."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import seed
from hypothesis.internal.conjecture import engine
from hypothesis.stateful import run_state_machine_as_test

from .model.machine import ProgressModel, Violation, model_for
from .model.mutations import MUTATIONS, Mutation
from .model.profiles import (
    ARTIFACTS,
    MUTATION_HUNT,
    PROFILES,
    SHRINK_SECONDS,
    hunt_seed,
    model_settings,
    profile_name,
    run_seed,
)
from .model.world import World, build_world
from .support.availability import require_postgres
from .support.isolation import PG_TEST_DB


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    require_postgres()
    built = build_world(f"{PG_TEST_DB}_model", tmp_path_factory.mktemp("model"))
    yield built
    built.close()


def test_the_verified_path_keeps_its_guarantee_in_every_interleaving_explored(world: World):
    profile, run = profile_name(), run_seed()
    print(f"interleaving model: profile {profile}, seed {run} (MODEL_SEED={run} replays it)")
    machine = seed(run)(model_for(world, path="verified"))
    started = time.perf_counter()
    try:
        run_state_machine_as_test(machine, settings=model_settings(**PROFILES[profile]))
    except BaseException as error:
        error.add_note(f"model seed: MODEL_SEED={run} MODEL_PROFILE={profile}")
        raise
    figures = {
        "profile": profile,
        "seed": run,
        **machine.figures.as_dict(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"verified-{profile}.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures))
    limits = PROFILES[profile]
    assert figures["examples"] >= limits["max_examples"] // 2  # it did search
    assert figures["steps"] >= figures["examples"]


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.name)
def test_the_model_finds_the_hole_when_a_defence_is_off(
    world: World, mutation: Mutation, monkeypatch: pytest.MonkeyPatch
):
    """Each mutation must be caught, and by the invariant its defence exists for; the shrunk
    counterexample is printed and kept in test-artifacts/model/counterexamples/."""
    run = hunt_seed()
    # hypothesis's own bound on shrinking (5 minutes), shortened for a whole suite's budget
    shrink_seconds = SHRINK_SECONDS[profile_name()]
    monkeypatch.setattr(engine, "MAX_SHRINKING_SECONDS", shrink_seconds, raising=False)
    mutation.switch_off(monkeypatch)
    machine = seed(run)(
        model_for(
            world,
            path=mutation.path,
            checks=frozenset({mutation.finds}),
            name=f"Model_{mutation.name}",
        )
    )
    started = time.perf_counter()
    try:
        run_state_machine_as_test(machine, settings=model_settings(**MUTATION_HUNT))
    except Violation as violation:
        found = violation
    else:
        pytest.fail(
            f"no counterexample for {mutation.what} in {machine.figures.examples} examples "
            f"(MODEL_SEED={run}): the model has a hole"
        )
    assert found.kind == mutation.finds
    counterexample = "\n".join(
        [
            f"# {mutation.what}: {found.kind} (seed {run}, "
            f"{machine.figures.examples} examples, {time.perf_counter() - started:.1f} s)",
            *getattr(found, "__notes__", []),
            f"# {type(found).__name__}: {found}",
        ]
    )
    folder = ARTIFACTS / "counterexamples"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{mutation.name}.txt").write_text(counterexample + "\n")
    print(counterexample)


# The shortest counterexamples, as replayable programs: each breaks its invariant with the
# defence off and passes on the real verified path (hypothesis finds them itself above).
SHORTEST = {
    "legacy": [
        ("complete", {"worker": 0, "learner": 0, "offset": 0, "update": "finish"}),
        ("check_access", {"worker": 0, "learner": 0, "offset": 0, "send_version": False}),
    ],
    "no_double_check": [
        ("complete", {"worker": 0, "learner": 0, "offset": 0, "update": "finish"}),
        ("check_access", {"worker": 1, "learner": 0, "offset": 0, "send_version": False}),
    ],
    "no_floor": [
        ("complete", {"worker": 0, "learner": 0, "offset": 0, "update": "finish"}),
        ("read_progress", {"worker": 0, "learner": 0, "send_version": False}),
    ],
    "no_min_version": [
        ("complete", {"worker": 0, "learner": 0, "offset": 0, "update": "finish"}),
        ("read_progress", {"worker": 1, "learner": 0, "send_version": True}),
    ],
    "no_version_rule": [  # a1's own announcements come back to it after its second write
        ("complete", {"worker": 0, "learner": 0, "offset": 0, "update": "finish"}),
        ("complete", {"worker": 0, "learner": 0, "offset": 0, "update": "finish"}),
        ("announcement_delivered", {"worker": 0, "newest": False}),
    ],
    "trust_the_position": [  # a2 learns the replica replayed version 1's position, then
        # the client sends version 2 with version 1's position (one it kept by mistake)
        ("complete", {"worker": 0, "learner": 0, "offset": 0, "update": "finish"}),
        ("complete", {"worker": 0, "learner": 0, "offset": 0, "update": "finish"}),
        ("replica_catches_up", {"learner": 0, "everything": False}),  # reports version 1's
        ("read_progress", {"worker": 1, "learner": 0, "send_version": False}),
        ("read_progress", {"worker": 1, "learner": 0, "send_version": True, "position": "older"}),
    ],
    "legacy_review": [  # a2 reads its review set from the lagging replica
        ("complete", {"worker": 0, "learner": 0, "offset": 0, "update": "finish"}),
        ("read_review", {"worker": 1, "learner": 0, "send_version": False}),
    ],
    "no_review_double_check": [  # the same read, unconfirmed
        ("complete", {"worker": 0, "learner": 0, "offset": 0, "update": "finish"}),
        ("read_review", {"worker": 1, "learner": 0, "send_version": False}),
    ],
}


def play(machine: ProgressModel, program: list[tuple[str, dict]]) -> None:
    for rule_name, arguments in program:
        getattr(machine, rule_name)(**arguments)
        machine.acknowledged_completions_are_in_the_primary()
        machine.floors_hold_what_each_worker_was_told()


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.name)
def test_the_shortest_counterexample_breaks_only_the_mutant(
    world: World, mutation: Mutation, monkeypatch: pytest.MonkeyPatch
):
    program = SHORTEST[mutation.name]
    if mutation.path == "verified":
        play(model_for(world, path="verified")(), program)  # the real path keeps its promise
    mutation.switch_off(monkeypatch)
    mutant = model_for(world, path=mutation.path, checks=frozenset({mutation.finds}))()
    with pytest.raises(Violation) as found:
        play(mutant, program)
    assert found.value.kind == mutation.finds
