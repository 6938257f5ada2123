"""Migrations build the schema on an empty database of each engine; seeding is idempotent."""

import json
import uuid
from datetime import UTC, datetime, timedelta

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


def test_migration_0007_gives_kept_completions_and_reports_what_the_judgement_needs(
    empty_database_url, tmp_path
):
    """Completions made before 0007 get their versions in the order they were made and an
    acknowledgement at their completion time; reports keep their judgement."""

    def table(name: str, **columns: sa.types.TypeEngine) -> sa.TableClause:
        return sa.table(name, *(sa.column(column, kind) for column, kind in columns.items()))

    at = sa.DateTime(timezone=True)
    text, number = sa.String(), sa.Integer()
    learner, t0, minute = uuid.uuid4(), datetime(2026, 12, 1, 8, tzinfo=UTC), timedelta(minutes=1)
    app = build_app(empty_database_url, tmp_path)
    with app.app_context():
        upgrade(revision="0006")
        with db.engine.begin() as conn:
            lesson = {"module_id": 1, "title": "L"}
            conn.execute(
                table("modules", id=number, slug=text, title=text, position=number).insert(),
                {"id": 1, "slug": "m", "title": "M", "position": 0},
            )
            conn.execute(
                table("lessons", id=number, module_id=number, slug=text, title=text,
                      position=number).insert(),
                [{**lesson, "id": i, "slug": f"l{i}", "position": i} for i in (1, 2, 3)],
            )  # fmt: skip
            conn.execute(
                table("users", id=sa.Uuid(), email=text, email_verified=sa.Boolean(),
                      created_at=at).insert(),
                {"id": learner, "email": "a@b.c", "email_verified": True, "created_at": t0},
            )  # fmt: skip
            conn.execute(  # made in the order lesson 2, 1, 3; inserted out of that order
                table("lesson_progress", user_id=sa.Uuid(), lesson_id=number,
                      completed_at=at).insert(),
                [
                    {"user_id": learner, "lesson_id": lesson, "completed_at": t0 + minutes}
                    for lesson, minutes in ((1, minute * 5), (3, minute * 9), (2, minute))
                ],
            )  # fmt: skip
            conn.execute(
                table("lock_screen_reports", receipt_id=text, learner_id=sa.Uuid(),
                      module_id=text, lesson_id=text, path=text, answered_version=number,
                      shown_at=at, reported_at=at, false_lock=sa.Boolean()).insert(),
                [
                    {"receipt_id": receipt, "learner_id": learner, "module_id": "m",
                     "lesson_id": "l1", "path": "legacy", "answered_version": 0,
                     "shown_at": t0, "reported_at": t0, "false_lock": false_lock}
                    for receipt, false_lock in (("a", True), ("b", False))
                ],
            )  # fmt: skip
        upgrade(revision="0007")
        with db.engine.connect() as conn:
            kept = conn.execute(
                sa.text("SELECT lesson_id, version FROM lesson_progress ORDER BY lesson_id")
            ).all()
            acknowledged = conn.scalar(
                sa.text("SELECT count(*) FROM lesson_progress WHERE acknowledged_at = completed_at")
            )
            judged = conn.execute(
                sa.text("SELECT receipt_id, judgement FROM lock_screen_reports ORDER BY receipt_id")
            ).all()
        downgrade(revision="0006")
        for engine in db.engines.values():
            engine.dispose()
    assert [tuple(row) for row in kept] == [(1, 2), (2, 1), (3, 3)]
    assert acknowledged == 3
    assert [tuple(row) for row in judged] == [("a", "false_lock"), ("b", "true_lock")]
