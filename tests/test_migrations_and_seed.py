"""Migrations build the schema on an empty database of each engine; seeding is idempotent."""

import json

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from harness import databases
from progress.extensions import db
from progress.models import Lesson, Module

from .support.apps import build_app
from .support.availability import require_postgres
from .support.isolation import PG_TEST_DB

TABLES = {"users", "modules", "lessons", "lesson_progress", "progress_versions"}


@pytest.fixture(params=["postgresql", "sqlite"])
def empty_database_url(request, tmp_path):
    if request.param == "postgresql":
        require_postgres()
        return databases.recreate(f"{PG_TEST_DB}_migrations")
    return f"sqlite:///{tmp_path / 'empty.db'}"


def test_migrations_upgrade_an_empty_database_to_the_models_and_back(empty_database_url, tmp_path):
    app = build_app(empty_database_url, tmp_path)
    with app.app_context():
        upgrade()
        inspector = sa.inspect(db.engine)
        assert set(inspector.get_table_names()) >= TABLES
        with db.engine.connect() as conn:  # the migrations match the models exactly
            assert compare_metadata(MigrationContext.configure(conn), db.metadata) == []
        downgrade(revision="base")
        assert not TABLES & set(sa.inspect(db.engine).get_table_names())
        for engine in db.engines.values():
            engine.dispose()


def test_seed_loads_the_sample_and_a_second_run_changes_nothing(app):
    runner = app.test_cli_runner()
    again = runner.invoke(args=["seed"])
    assert again.exit_code == 0
    assert json.loads(again.output) == {"modules": 4, "lessons": 20, "changed": 0}
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Module)) == 4
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Lesson)) == 20


def test_seed_from_a_file_adds_and_retitles_by_id(app, tmp_path):
    from progress.curriculum import read_curriculum_file

    data = read_curriculum_file()
    data["modules"][0]["title"] = "First steps"
    data["modules"][-1]["lessons"].append({"id": "review", "title": "Review"})
    path = tmp_path / "course.json"
    path.write_text(json.dumps(data))
    try:
        result = app.test_cli_runner().invoke(args=["seed", str(path)])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["changed"] == 2
        curriculum = app.test_client().get("/api/v1/curriculum").get_json()
        assert curriculum["modules"][0]["title"] == "First steps"
        assert curriculum["modules"][-1]["lessons"][-1]["id"] == "review"
    finally:  # put the sample back for the other tests
        with app.app_context():
            db.session.execute(sa.delete(Lesson).where(Lesson.slug == "review"))
            db.session.commit()
        app.test_cli_runner().invoke(args=["seed"])


def test_seed_refuses_a_malformed_file_and_names_the_problem(app, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps({"modules": [{"id": "x", "title": "X", "lessons": [{"id": "a b"}]}]})
    )
    result = app.test_cli_runner().invoke(args=["seed", str(path)])
    assert result.exit_code != 0
    assert "modules[0].lessons[0]" in result.output
