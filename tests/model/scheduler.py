"""The seam's other side: executors that let the model decide when a cache update runs.

A path hands its cache update to `WorkerState.background(path)`. In the model that is an
`UpdateScheduler`: the update runs at once (it finishes, or it fails the way a broken cache
fails), or it is parked and its caller's deadline passes at once; a parked update runs later,
fails later or never runs, whenever the model says.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any, Literal

from progress import faults

Outcome = Literal["finish", "fail", "timeout"]


class ParkedFuture(Future):
    """A future whose waiter never waits: while the update is parked, the caller's
    deadline has passed (nothing else runs in the meantime, so waiting changes nothing)."""

    def result(self, timeout: float | None = None) -> Any:
        if not self.done():
            raise TimeoutError("the model parked this cache update")
        return super().result(timeout)


@contextlib.contextmanager
def failing_cache() -> Iterator[None]:
    """The service's own fault: `faults.before_cache_update` raises inside the update."""
    before = faults.current()
    faults.configure(dataclasses.replace(before, cache_update_failure_rate=1.0))
    try:
        yield
    finally:
        faults.configure(before)


@dataclass
class ParkedUpdate:
    worker: str
    path: str
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    future: ParkedFuture

    def run(self, *, fail: bool) -> None:
        with failing_cache() if fail else contextlib.nullcontext():
            try:
                self.future.set_result(self.fn(*self.args))
            except Exception as exc:  # the caller (if any) sees it as a failed update
                self.future.set_exception(exc)

    def describe(self) -> str:
        return f"{self.path} cache update on {self.worker}"


class UpdateScheduler(Executor):
    """One worker's executor for one path. `outcome` says what the next update does; a
    fire-and-forget path (legacy) always parks, as nobody waits for it."""

    def __init__(self, worker: str, path: str, parked: list[ParkedUpdate]) -> None:
        self.worker = worker
        self.path = path
        self.parked = parked
        self.outcome: Outcome = "timeout" if path == "legacy" else "finish"

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        assert not kwargs, "the paths pass positional arguments"
        update = ParkedUpdate(self.worker, self.path, fn, args, ParkedFuture())
        if self.outcome == "timeout":
            self.parked.append(update)
        else:
            update.run(fail=self.outcome == "fail")
        return update.future
