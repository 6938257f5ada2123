"""CPU accounting for a wrk run: the cores wrk, the server's process group, PostgreSQL,
interrupts, the hypervisor and everything else used, from /proc."""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator, Mapping
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _processes() -> Iterator[tuple[str, int, int]]:
    """(command name, process group, utime + stime in clock ticks) of every process."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        name_end = raw.rfind(")")
        name = raw[raw.find("(") + 1 : name_end]
        fields = raw[name_end + 2 :].split()
        yield name, int(fields[2]), int(fields[11]) + int(fields[12])


def cpu_sample(server_pgid: int) -> dict[str, float]:
    """CPU seconds so far: the whole machine (busy, of which interrupts and steal), the
    server's group, PostgreSQL, and the children this process has waited for (wrk)."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in first[:8])
    server = postgres = 0
    for name, pgrp, ticks in _processes():
        if pgrp == server_pgid:
            server += ticks
        elif name == "postgres":
            postgres += ticks
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "busy": (user + nice + system + irq + softirq + steal) / CLK_TCK,
        "irq": (irq + softirq) / CLK_TCK,
        "steal": steal / CLK_TCK,
        "server": server / CLK_TCK,
        "postgres": postgres / CLK_TCK,
        "wrk": children.ru_utime + children.ru_stime,
    }


CPU_PARTS = ("wrk", "server", "postgres", "irq", "steal")


def cpu_split(before: Mapping[str, float], after: Mapping[str, float], wall: float) -> dict:
    """Cores used during the run by wrk, the server, PostgreSQL (every database on the
    machine), interrupts (loopback networking), the hypervisor (steal) and everything else
    (other processes on a shared machine)."""
    used = {key: max(0.0, after[key] - before[key]) for key in before}
    cores = {key: used[key] / wall for key in CPU_PARTS}
    cores["other"] = max(0.0, used["busy"] - sum(used[key] for key in CPU_PARTS)) / wall
    cores["total"] = used["busy"] / wall
    return {key: round(value, 2) for key, value in cores.items()}
