"""`make serve`: the service behind its front door, until Ctrl-C or SIGTERM.

Debian's nginx listens on HOST:PORT with the config rendered from nginx/progress.conf.j2
(harness/front_door.py); gunicorn listens only on a unix socket under the run directory.
Both write to this terminal. Stopping this process stops both; if either exits, so does the
other.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.front_door import (
    service_limits,
    start_nginx,
    upstream_timeout_ms,
    wait_for_socket,
    write_config,
)
from harness.processes import REPO, stop_group

POLL_S = 0.5


def _stop_on_sigterm(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # the same way out as Ctrl-C


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8000", help="nginx's HOST:PORT")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--run-dir", type=Path, default=REPO / "instance" / "front-door")
    args = parser.parse_args()

    run_dir = args.run_dir.resolve()
    socket = run_dir / "gunicorn.sock"
    limits = service_limits(os.environ)
    config = write_config(run_dir, listen=args.listen, socket=socket, **limits)
    port = args.listen.rpartition(":")[2]
    env = {
        **os.environ,
        "BIND": f"unix:{socket}",
        "PORT": port,  # names the metrics directory, as under `make run`
        "WEB_CONCURRENCY": str(args.workers),
        "GUNICORN_THREADS": str(args.threads),
    }
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    gunicorn = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:app"],
        cwd=REPO,
        env=env,
        start_new_session=True,  # stopped by us, not by the terminal's signal to the group
    )
    try:
        wait_for_socket(socket, gunicorn)
    except (RuntimeError, KeyboardInterrupt) as error:
        stop_group(gunicorn)
        print(error or "stopped", file=sys.stderr)
        return 1
    nginx = start_nginx(config, run_dir, log_path=None)
    print(
        f"front door: http://{args.listen} (nginx) -> unix:{socket} (gunicorn, "
        f"{args.workers} x {args.threads}); body limit {limits['max_body_bytes']} bytes, "
        f"upstream timeout {upstream_timeout_ms(limits['db_timeout_ms'])} ms. Ctrl-C stops both.",
        flush=True,
    )
    try:
        while gunicorn.poll() is None and nginx.poll() is None:
            time.sleep(POLL_S)
        exited = "gunicorn" if gunicorn.poll() is not None else "nginx"
        print(f"{exited} exited; stopping the other", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop_group(nginx)
        stop_group(gunicorn)


if __name__ == "__main__":
    sys.exit(main())
