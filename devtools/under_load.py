"""`make test-under-load`: a command (the whole suite) with CPU-bound processes beside it
for its whole run, as on a machine that other suites and servers keep busy.

    python -m devtools.under_load --processes 2 -- make test

The busy processes run at normal priority. They are stopped however the command ends, and
each also stops by itself once this process is gone (killed with no chance to clean up), so
none outlives the run. The command runs in its own process group, stopped as a whole when
this process is interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time

from harness.processes import REPO, stop_group

# How long the interrupted command gets to tear itself down before its group is stopped.
INTERRUPT_GRACE_S = 60


def spin() -> None:
    """Use one core until the parent that started us is gone."""
    parent = os.getppid()
    while os.getppid() == parent:
        for _ in range(1_000_000):  # a few tens of ms between checks
            pass


def run_under_load(command: list[str], processes: int) -> int:
    """The command's exit status, run beside `processes` busy processes."""
    spinner = [sys.executable, "-m", "devtools.under_load", "--spin"]
    busy = [subprocess.Popen(spinner, cwd=REPO, start_new_session=True) for _ in range(processes)]
    running: subprocess.Popen | None = None
    started = time.monotonic()
    status = 1
    try:
        running = subprocess.Popen(command, start_new_session=True)
        status = running.wait()
    except KeyboardInterrupt:
        status = 130
        if running is not None:  # pytest tears its fixtures (servers, databases) down on SIGINT
            with contextlib.suppress(ProcessLookupError):
                os.killpg(running.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                running.wait(timeout=INTERRUPT_GRACE_S)
    finally:
        if running is not None:
            stop_group(running)
        for process in busy:
            process.kill()
            process.wait(timeout=10)
    minutes, seconds = divmod(round(time.monotonic() - started), 60)
    print(
        f"under load ({processes} busy processes): {' '.join(command)} exited {status} "
        f"after {minutes} min {seconds} s",
        flush=True,
    )
    return status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=2, help="busy processes (default 2)")
    parser.add_argument("--spin", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    args = parser.parse_args()
    if args.spin:
        spin()
        return 0
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    # A SIGTERM (a CI runner's timeout) stops the command and the busy processes as Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    return run_under_load(command, args.processes)


if __name__ == "__main__":
    sys.exit(main())
