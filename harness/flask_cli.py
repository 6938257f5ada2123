"""The service's own commands (`flask --app app ...`), run as an operator runs them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from .processes import REPO, on_tree

FLASK = (sys.executable, "-m", "flask", "--app", "app")


def flask(
    args: Sequence[str], env: Mapping[str, str], root: Path = REPO, timeout: float = 180
) -> str:
    """Run one command to its end; its output, or RuntimeError with the output's tail."""
    result = subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
        [*FLASK, *args],
        cwd=root,
        env=on_tree(env, root),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"flask {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )
    return result.stdout.strip()


def migrate_and_seed(
    env: Mapping[str, str], root: Path = REPO, rollout: int | None = None, reason: str = "harness"
) -> None:
    """Migrations, the course, and optionally the rollout percentage, on env's database."""
    flask(["db", "upgrade"], env, root)
    flask(["seed"], env, root)
    if rollout is not None:
        flask(["rollout", "set", str(rollout), "--reason", reason], env, root)
