"""Settings from the environment: loud when a secret is missing, no faults in production,
and every one of them in `.env.example` with its default (tests/test_docs.py checks that
docs/design.md explains each)."""

import re
import shlex
from pathlib import Path

import pytest

from progress.config import ConfigError, Settings, load_settings
from progress.faults import Faults

SECRET = "s" * 40
ROOT = Path(__file__).resolve().parent.parent
# Read by the process before any app exists (metrics at import, the instance directory,
# gunicorn's own settings), so not fields of Settings; in the example file all the same.
PROCESS_LEVEL = {
    "PROMETHEUS_MULTIPROC_DIR",
    "PROGRESS_METRICS",
    "PROGRESS_INSTANCE_PATH",
    "HOST",
    "PORT",
    "BIND",
    "WEB_CONCURRENCY",
    "GUNICORN_THREADS",
    "GUNICORN_TIMEOUT",
    "GUNICORN_LOG_LEVEL",
    "GUNICORN_READY_MESSAGE_FILE",
    "PROGRESS_ACCESS_LOG",
}
ASSIGNMENT = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch):
    """Only what each test passes: none of the settings the shell running pytest exports."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)


def example() -> tuple[dict[str, str], set[str]]:
    """`.env.example`'s values by name, and every name it lists (commented-out ones too)."""
    values, names = {}, set()
    for line in (ROOT / ".env.example").read_text().splitlines():
        if found := ASSIGNMENT.match(line):
            commented, name, value = found.groups()
            names.add(name)
            if not commented:
                values[name] = "".join(shlex.split(value))  # the quotes a shell would remove
    return values, names


def test_production_refuses_to_start_without_a_jwt_secret(tmp_path: Path):
    with pytest.raises(ConfigError, match="PROGRESS_JWT_SECRET is required"):
        load_settings(tmp_path, {})
    with pytest.raises(ConfigError, match="at least 32"):
        load_settings(tmp_path, {"PROGRESS_JWT_SECRET": "short"})


def test_development_makes_one_secret_and_keeps_it(tmp_path: Path):
    first = load_settings(tmp_path, {"PROGRESS_ENV": "development"})["PROGRESS_JWT_SECRET"]
    again = load_settings(tmp_path, {"PROGRESS_ENV": "development"})["PROGRESS_JWT_SECRET"]
    assert first == again
    assert len(first) >= 32
    assert (tmp_path / "dev-jwt-secret").stat().st_mode & 0o077 == 0


def test_fault_injection_is_refused_in_production(tmp_path: Path):
    env = {"PROGRESS_JWT_SECRET": SECRET, "PROGRESS_FAULTS": "cache_update_delay_ms=10"}
    with pytest.raises(ConfigError, match="refused in production"):
        load_settings(tmp_path, env)
    allowed = load_settings(tmp_path, {**env, "PROGRESS_ENV": "test"})
    assert allowed["PROGRESS_FAULTS"] == Faults(cache_update_delay_ms=10)


def test_a_malformed_setting_names_itself(tmp_path: Path):
    base = {"PROGRESS_ENV": "test", "PROGRESS_JWT_SECRET": SECRET}
    with pytest.raises(ConfigError, match="PROGRESS_STALE_AFTER_MS must be an integer"):
        load_settings(tmp_path, {**base, "PROGRESS_STALE_AFTER_MS": "soon"})
    with pytest.raises(ConfigError, match="unknown fault 'nap'"):
        load_settings(tmp_path, {**base, "PROGRESS_FAULTS": "nap=1"})
    with pytest.raises(ConfigError, match="PROGRESS_ENV"):
        load_settings(tmp_path, {**base, "PROGRESS_ENV": "staging"})
    with pytest.raises(ConfigError, match="PROGRESS_RATE_LIMIT_ADMIN: 'lots' is not a limit"):
        load_settings(tmp_path, {**base, "PROGRESS_RATE_LIMIT_ADMIN": "lots"})
    with pytest.raises(ConfigError, match="PROGRESS_RATE_LIMIT_STORAGE_URI: 'mongodb://db'"):
        load_settings(tmp_path, {**base, "PROGRESS_RATE_LIMIT_STORAGE_URI": "mongodb://db"})


def test_postgres_urls_use_psycopg_3(tmp_path: Path):
    settings = load_settings(
        tmp_path,
        {
            "PROGRESS_ENV": "test",
            "PROGRESS_JWT_SECRET": SECRET,
            "DATABASE_URL": "postgres://u@db/p",
            "DATABASE_REPLICA_URL": "postgresql://u@replica/p",
        },
    )
    assert settings["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@db/p"
    assert settings["SQLALCHEMY_BINDS"] == {"replica": "postgresql+psycopg://u@replica/p"}


def test_every_setting_is_in_the_example_file_with_its_default():
    values, names = example()
    assert names - PROCESS_LEVEL == Settings.model_fields.keys() <= values.keys()
    test = {"PROGRESS_ENV": "test"}  # the example's production needs a secret
    assert dict(Settings(**{**values, **test})) == dict(Settings(**test))


def test_the_process_environment_is_read_and_overrides_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("PROGRESS_ENV", "test")
    monkeypatch.setenv("PROGRESS_CACHE_TTL_S", "42")
    monkeypatch.setenv("PROGRESS_CORS_ORIGINS", "https://a.example.com,https://b.example.com")
    settings = load_settings(tmp_path, {"PROGRESS_CACHE_TTL_S": "7"})
    assert settings["PROGRESS_CACHE_TTL_S"] == 7
    assert settings["PROGRESS_CORS_ORIGINS"] == ["https://a.example.com", "https://b.example.com"]


def test_an_empty_number_means_its_default_and_bounds_are_enforced(tmp_path: Path):
    base = {"PROGRESS_ENV": "test", "PROGRESS_JWT_SECRET": SECRET}
    assert (
        load_settings(tmp_path, {**base, "PROGRESS_CACHE_TTL_S": ""})["PROGRESS_CACHE_TTL_S"] == 300
    )
    with pytest.raises(ConfigError, match="PROGRESS_TOKEN_TTL_S must be at least 60, got 5"):
        load_settings(tmp_path, {**base, "PROGRESS_TOKEN_TTL_S": "5"})
    with pytest.raises(ConfigError, match="PROGRESS_LOG_LEVEL: 'loud' is not a level"):
        load_settings(tmp_path, {**base, "PROGRESS_LOG_LEVEL": "loud"})
    with pytest.raises(ConfigError, match="PROGRESS_GUARD_SELECTOR: 'job=x' is not PromQL"):
        load_settings(tmp_path, {**base, "PROGRESS_GUARD_SELECTOR": "job=x"})


def test_a_bad_secret_is_never_repeated_in_the_error(tmp_path: Path):
    with pytest.raises(ConfigError) as raised:
        load_settings(tmp_path, {"PROGRESS_JWT_SECRET": "hunter2"})
    assert "hunter2" not in str(raised.value)
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__
