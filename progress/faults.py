"""Fault injection for the consistency lab and fault tests; off unless PROGRESS_FAULTS is set.

PROGRESS_FAULTS is a comma-separated list, for example
`cache_update_delay_ms=300,cache_update_failure_rate=0.5,db_latency_ms=20,drop_notifications=1`.
It is refused in production configuration.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Faults:
    cache_update_delay_ms: int = 0
    cache_update_failure_rate: float = 0.0
    db_latency_ms: int = 0
    drop_notifications: bool = False
    disable_double_check: bool = False
    # The verified path's completions fail at this rate: a regression of the verified path,
    # for the watch's tests.
    verified_completion_failure_rate: float = 0.0


class InjectedFault(RuntimeError):
    """A failure made on purpose by PROGRESS_FAULTS."""


_active = Faults()


def parse(spec: str) -> Faults:
    """`name=value,...` into Faults; ValueError names the bad part."""
    known = {f.name: f.type for f in fields(Faults)}
    values: dict[str, object] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, raw = part.partition("=")
        if name not in known:
            raise ValueError(f"unknown fault {name!r}; known: {', '.join(known)}")
        kind = known[name]
        try:
            if kind == "bool":
                values[name] = raw.strip().lower() in ("1", "true", "yes", "")
            elif kind == "float":
                values[name] = float(raw)
            else:
                values[name] = int(raw)
        except ValueError:
            raise ValueError(f"fault {name} needs a {kind}, got {raw!r}") from None
    faults = Faults(**values)  # type: ignore[arg-type]
    for name in ("cache_update_failure_rate", "verified_completion_failure_rate"):
        if not 0.0 <= getattr(faults, name) <= 1.0:
            raise ValueError(f"{name} must be within 0..1")
    return faults


def configure(faults: Faults) -> None:
    global _active
    _active = faults


def current() -> Faults:
    return _active


def before_cache_update() -> None:
    """Delay and maybe fail a cache update, as a slow or broken cache would."""
    if _active.cache_update_delay_ms:
        time.sleep(_active.cache_update_delay_ms / 1000)
    if _active.cache_update_failure_rate and random.random() < _active.cache_update_failure_rate:  # noqa: S311
        raise InjectedFault("injected cache update failure")


def before_completion(path: str) -> None:
    """Maybe fail a verified completion, as a regression of the verified path would."""
    rate = _active.verified_completion_failure_rate
    if rate and path == "verified" and random.random() < rate:  # noqa: S311
        raise InjectedFault("injected completion failure")


def before_db_read() -> None:
    if _active.db_latency_ms:
        time.sleep(_active.db_latency_ms / 1000)
