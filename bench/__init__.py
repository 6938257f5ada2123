"""Measurements of the service (docs/performance.md): `make bench`, `make profile`,
`make pg-capacity`."""

import time
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)
