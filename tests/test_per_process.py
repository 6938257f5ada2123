"""PerProcess: one value per process, built on first use; a forked child builds its own."""

import os

from progress.per_process import PerProcess


class Built:
    def __init__(self, number: int) -> None:
        self.number, self.closed = number, False


def holder(built: list[Built]) -> PerProcess[Built]:
    def build() -> Built:
        built.append(Built(len(built)))
        return built[-1]

    return PerProcess(build, close=lambda value: setattr(value, "closed", True))


def test_built_once_per_process_and_again_after_a_fork(monkeypatch):
    built: list[Built] = []
    value = holder(built)
    assert value.peek() is None
    assert value.get() is value.get() is built[0]
    parent = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: parent + 1)  # as in a forked child
    assert value.peek() is None
    assert value.get() is built[1]
    assert not built[0].closed  # the parent's: never closed by the child


def test_replace_closes_the_value_it_replaces_and_reset_the_last():
    built: list[Built] = []
    value = holder(built)
    first = value.get()
    value.replace(Built(99))
    assert first.closed
    assert value.get().number == 99
    replacement = value.get()
    value.reset()
    assert replacement.closed
    assert value.peek() is None
    assert value.get() is built[1]
