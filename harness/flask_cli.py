"""The service's own commands (`flask --app app ...`), run as an operator runs them."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from .processes import REPO, on_tree, run_to_end

FLASK = (sys.executable, "-m", "flask", "--app", "app")


def flask(
    args: Sequence[str], env: Mapping[str, str], root: Path = REPO, timeout: float = 180
) -> str:
    """Run one command to its end; its output, or RuntimeError with the output's tail."""
    return run_to_end([*FLASK, *args], cwd=root, env=on_tree(env, root), timeout=timeout)


def migrate_and_seed(
    env: Mapping[str, str], root: Path = REPO, rollout: int | None = None, reason: str = "harness"
) -> None:
    """Migrations, the course, and optionally the rollout percentage, on env's database."""
    flask(["db", "upgrade"], env, root)
    flask(["seed"], env, root)
    if rollout is not None:
        flask(["rollout", "set", str(rollout), "--reason", reason], env, root)
