"""The real-Prometheus runner lives with the lab, which uses it too."""

from lab.prometheus import RunningPrometheus, available, running_prometheus

__all__ = ["RunningPrometheus", "available", "running_prometheus"]
