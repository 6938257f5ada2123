"""Another revision of the service measured beside the working tree: checked out with
`git worktree add` into a temporary directory and run with this virtualenv, its own
`progress` package first on the import path (nothing is installed for it)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from harness.processes import REPO, on_tree


def git(*args: str, root: Path = REPO) -> str:
    result = subprocess.run(  # noqa: S603 - git from PATH, arguments we built
        ["git", *args],  # noqa: S607
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


@contextlib.contextmanager
def checkout(revision: str) -> Iterator[Path]:
    """The tree at `revision`, removed (with its worktree entry) on the way out."""
    tmp = Path(tempfile.mkdtemp(prefix="progress-baseline-"))
    tree = tmp / "tree"
    git("worktree", "add", "--detach", "--quiet", str(tree), revision)
    try:
        yield tree
    finally:
        with contextlib.suppress(RuntimeError):
            git("worktree", "remove", "--force", str(tree))
        shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(RuntimeError):
            git("worktree", "prune")


def describe(root: Path) -> str:
    """The commit a tree is at, marked when it has uncommitted changes."""
    commit = git("rev-parse", "--short", "HEAD", root=root)
    return commit + ("+changes" if git("status", "--porcelain", root=root) else "")


def imported_from(root: Path, env: Mapping[str, str]) -> Path:
    """Where a process started as the harness starts the service, on `root`, imports the
    `progress` package from; RuntimeError unless that is inside `root`."""
    result = subprocess.run(
        [sys.executable, "-c", "import progress; print(progress.__file__)"],
        cwd=root,
        env=on_tree(env, root),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    module = Path(result.stdout.strip()).resolve()
    if not module.is_relative_to(root.resolve()):
        raise RuntimeError(f"the service on {root} would import progress from {module}")
    return module
