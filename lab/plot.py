"""The lab's picture: access-check latency (p50/p95/p99) and false lock screens over time,
one colour per path, with the learners active and the requests served per second."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt

from .learners import Timeline, percentile

PATHS = {"legacy": "tab:orange", "verified": "tab:blue"}


def draw(timeline: Timeline, target: Path, title: str) -> None:
    # About 60 points whatever the run's length.
    bucket_s = max(1, round(max((t for t, *_ in timeline.requests), default=1) / 60))
    access: dict[str, dict[int, list[float]]] = {p: defaultdict(list) for p in PATHS}
    served: dict[int, int] = defaultdict(int)
    for t, path, kind, latency in timeline.requests:
        bucket = int(t // bucket_s)
        served[bucket] += 1
        if kind == "access" and path in access:
            access[path][bucket].append(latency * 1000)
    locks: dict[str, dict[int, int]] = {p: defaultdict(int) for p in PATHS}
    for t, path in timeline.false_locks:
        if path in locks:
            locks[path][int(t // bucket_s)] += 1
    last = max([*served, 0]) + 1
    x = [b * bucket_s for b in range(last)]

    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(11, 10), sharex=True)
    for path, colour in PATHS.items():
        for q, style in ((50, "-"), (95, "--"), (99, ":")):
            values = [percentile(access[path].get(b, []), q) for b in range(last)]
            top.plot(x, values, style, color=colour, marker=".", label=f"{path} p{q}")
        middle.step(
            x, [locks[path].get(b, 0) for b in range(last)], where="post", color=colour,
            label=f"{path}: {sum(locks[path].values())} in all",
        )  # fmt: skip
    top.set_ylabel("access check latency, ms")
    top.set_yscale("log")
    top.legend(ncol=2, fontsize="small")
    top.set_title(f"The consistency lab: {title}")
    middle.set_ylabel(f"false lock screens seen per {bucket_s} s")
    middle.legend(fontsize="small")
    bottom.plot(x, [served.get(b, 0) / bucket_s for b in range(last)], color="tab:green")
    bottom.set_ylabel("requests served per s", color="tab:green")
    learners = bottom.twinx()
    learners.step(
        [t for t, _ in timeline.activity], [n for _, n in timeline.activity], where="post",
        color="tab:grey",
    )  # fmt: skip
    learners.set_ylabel("learners active", color="tab:grey")
    bottom.set_xlabel("seconds since the first learner started")
    fig.tight_layout()
    fig.savefig(target, dpi=90)
    plt.close(fig)
