"""Settings from the environment: loud when a secret is missing, no faults in production."""

from pathlib import Path

import pytest

from progress.config import ConfigError, load_settings
from progress.faults import Faults

SECRET = "s" * 40


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
