"""Debian's Chromium as the tests and the demo's screenshots launch it (never a downloaded
browser): its path, and the flags that keep it off the network this machine doesn't have."""

from __future__ import annotations

import os
from pathlib import Path

CHROMIUM = Path(os.environ.get("PROGRESS_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
