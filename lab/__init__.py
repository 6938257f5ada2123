"""The consistency lab: `python -m lab --help` (see lab/run.py)."""
