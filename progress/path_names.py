"""The names of the two progress paths, in one place below everything that labels by path
(metrics, receipts, the paths themselves, the API's schemas)."""

from __future__ import annotations

from typing import Literal, get_args

PathName = Literal["legacy", "verified"]
PATHS: tuple[PathName, ...] = get_args(PathName)
