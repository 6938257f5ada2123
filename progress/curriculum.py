"""The ordered curriculum with each lesson's words and XP: loading, seeding, the unlock rule
and the review set (the only copy of each)."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from .extensions import db
from .models import DEFAULT_LESSON_XP, Lesson, LessonWord, Module

SAMPLE_CURRICULUM = "spanish-a1.json"
MAX_LESSON_XP = 1000
MAX_WORDS = 50  # per lesson


@dataclass(frozen=True, slots=True)
class Word:
    term: str  # in the course's language
    translation: str  # in the learner's


@dataclass(frozen=True, slots=True)
class LessonRef:
    id: int
    module_slug: str
    slug: str
    title: str
    index: int  # position in the whole course, modules in order
    xp: int = DEFAULT_LESSON_XP
    words: tuple[Word, ...] = ()


@dataclass(frozen=True, slots=True)
class ModuleRef:
    slug: str
    title: str
    lessons: tuple[LessonRef, ...]


class Curriculum:
    """Modules in order, each with its lessons in order; immutable once loaded."""

    def __init__(self, modules: tuple[ModuleRef, ...]) -> None:
        self.modules = modules
        self.lessons: tuple[LessonRef, ...] = tuple(
            lesson for module in modules for lesson in module.lessons
        )
        self._by_key = {(lesson.module_slug, lesson.slug): lesson for lesson in self.lessons}
        self._by_id = {lesson.id: lesson for lesson in self.lessons}
        self._module_slugs = {module.slug for module in modules}

    def has_module(self, module_slug: str) -> bool:
        return module_slug in self._module_slugs

    def find(self, module_slug: str, lesson_slug: str) -> LessonRef | None:
        return self._by_key.get((module_slug, lesson_slug))

    def by_id(self, lesson_id: int) -> LessonRef | None:
        return self._by_id.get(lesson_id)

    def previous(self, lesson: LessonRef) -> LessonRef | None:
        return self.lessons[lesson.index - 1] if lesson.index > 0 else None


def is_lesson_accessible(
    curriculum: Curriculum, completed: Collection[int], lesson: LessonRef
) -> bool:
    """The unlock rule: the course's first lesson is open; any other lesson opens when the
    lesson before it (in its module, or the previous module's last) is complete."""
    if lesson.id in completed:
        return True
    previous = curriculum.previous(lesson)
    return previous is None or previous.id in completed


def accessible_lessons(
    curriculum: Curriculum, completed: Collection[int]
) -> Iterator[tuple[LessonRef, bool]]:
    for lesson in curriculum.lessons:
        yield lesson, is_lesson_accessible(curriculum, completed, lesson)


@dataclass(frozen=True, slots=True)
class ReviewWord:
    word: Word
    lesson: LessonRef


def review_words(curriculum: Curriculum, completed: Collection[int]) -> list[ReviewWord]:
    """The review set: the words of every completed lesson, in the course's order. Derived
    from a progress snapshot, so it is exactly as current as that snapshot."""
    return [
        ReviewWord(word, lesson)
        for lesson in curriculum.lessons
        if lesson.id in completed
        for word in lesson.words
    ]


def load_curriculum() -> Curriculum:
    """Read the curriculum from the database, in order, with each lesson's words."""
    rows = db.session.execute(
        sa.select(Module.slug, Module.title, Lesson.id, Lesson.slug, Lesson.title, Lesson.xp)
        .join(Lesson, Lesson.module_id == Module.id)
        .order_by(Module.position, Module.id, Lesson.position, Lesson.id)
    ).all()
    words: dict[int, list[Word]] = {}
    for lesson_id, term, translation in db.session.execute(
        sa.select(LessonWord.lesson_id, LessonWord.term, LessonWord.translation).order_by(
            LessonWord.lesson_id, LessonWord.position
        )
    ):
        words.setdefault(lesson_id, []).append(Word(term, translation))
    modules: list[ModuleRef] = []
    for index, row in enumerate(rows):
        module_slug, module_title, lesson_id, lesson_slug, lesson_title, xp = row
        if not modules or modules[-1].slug != module_slug:
            modules.append(ModuleRef(module_slug, module_title, ()))
        lesson = LessonRef(
            lesson_id,
            module_slug,
            lesson_slug,
            lesson_title,
            index,
            xp,
            tuple(words.get(lesson_id, ())),
        )
        modules[-1] = ModuleRef(module_slug, module_title, (*modules[-1].lessons, lesson))
    db.session.rollback()  # end the read transaction; nothing was written
    return Curriculum(tuple(modules))


class CurriculumFileError(ValueError):
    """The curriculum file is not in the expected shape."""


def read_curriculum_file(path: Path | None = None) -> dict[str, Any]:
    """Parse and check a curriculum file; the bundled sample when `path` is None."""
    if path is None:
        text = resources.files("progress.data").joinpath(SAMPLE_CURRICULUM).read_text("utf-8")
    else:
        text = Path(path).read_text("utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CurriculumFileError(f"not JSON: {exc}") from None
    modules = data.get("modules") if isinstance(data, dict) else None
    if not isinstance(modules, list) or not modules:
        raise CurriculumFileError("expected {'modules': [...]} with at least one module")
    seen_modules: set[str] = set()
    for m, module in enumerate(modules):
        _check_item(module, f"modules[{m}]")
        if module["id"] in seen_modules:
            raise CurriculumFileError(f"modules[{m}].id {module['id']!r} is repeated")
        seen_modules.add(module["id"])
        lessons = module.get("lessons")
        if not isinstance(lessons, list) or not lessons:
            raise CurriculumFileError(f"modules[{m}].lessons must be a non-empty list")
        seen_lessons: set[str] = set()
        for i, lesson in enumerate(lessons):
            _check_item(lesson, f"modules[{m}].lessons[{i}]")
            if lesson["id"] in seen_lessons:
                raise CurriculumFileError(f"modules[{m}].lessons[{i}].id is repeated")
            seen_lessons.add(lesson["id"])
            _check_xp_and_words(lesson, f"modules[{m}].lessons[{i}]")
    return data


def _check_xp_and_words(lesson: dict[str, Any], where: str) -> None:
    """`xp` (optional, a whole number 0-MAX_LESSON_XP) and `words` (optional, a list of
    {term, translation})."""
    xp = lesson.get("xp", DEFAULT_LESSON_XP)
    if isinstance(xp, bool) or not isinstance(xp, int) or not 0 <= xp <= MAX_LESSON_XP:
        raise CurriculumFileError(f"{where}.xp must be a whole number 0-{MAX_LESSON_XP}")
    words = lesson.get("words", [])
    if not isinstance(words, list) or len(words) > MAX_WORDS:
        raise CurriculumFileError(f"{where}.words must be a list of at most {MAX_WORDS}")
    for w, word in enumerate(words):
        if not isinstance(word, dict):
            raise CurriculumFileError(f"{where}.words[{w}] must be an object")
        for key in ("term", "translation"):
            value = word.get(key)
            if not isinstance(value, str) or not value.strip() or len(value) > 200:
                raise CurriculumFileError(
                    f"{where}.words[{w}].{key} must be a string of 1-200 characters"
                )


def _file_words(lesson_item: dict[str, Any]) -> list[tuple[str, str]]:
    return [(word["term"], word["translation"]) for word in lesson_item.get("words", [])]


def _check_item(item: Any, where: str) -> None:
    if not isinstance(item, dict):
        raise CurriculumFileError(f"{where} must be an object")
    for key, limit in (("id", 64), ("title", 200)):
        value = item.get(key)
        if not isinstance(value, str) or not value or len(value) > limit:
            raise CurriculumFileError(f"{where}.{key} must be a string of 1-{limit} characters")
    if not all(c.isalnum() or c in "-_" for c in item["id"]):
        raise CurriculumFileError(f"{where}.id may hold only letters, digits, '-' and '_'")


def seed_curriculum(data: dict[str, Any]) -> dict[str, int]:
    """Insert or update modules and lessons (their XP and words too) by id; running it twice
    changes nothing. XP already granted stays as it was granted.

    Lessons missing from the file are kept (learners' completions point at them).
    """
    counts = {"modules": 0, "lessons": 0, "changed": 0}
    existing = {m.slug: m for m in db.session.scalars(sa.select(Module))}
    for position, item in enumerate(data["modules"]):
        module = existing.get(item["id"])
        if module is None:
            module = Module(slug=item["id"], title=item["title"], position=position)
            db.session.add(module)
            counts["changed"] += 1
        elif (module.title, module.position) != (item["title"], position):
            module.title, module.position = item["title"], position
            counts["changed"] += 1
        db.session.flush()
        lessons = {lesson.slug: lesson for lesson in module.lessons}
        for lesson_position, lesson_item in enumerate(item["lessons"]):
            lesson = lessons.get(lesson_item["id"])
            xp = lesson_item.get("xp", DEFAULT_LESSON_XP)
            words = _file_words(lesson_item)
            if lesson is None:
                lesson = Lesson(
                    module_id=module.id,
                    slug=lesson_item["id"],
                    title=lesson_item["title"],
                    position=lesson_position,
                    xp=xp,
                )
                db.session.add(lesson)
                counts["changed"] += 1
            elif (lesson.title, lesson.position, lesson.xp) != (
                lesson_item["title"],
                lesson_position,
                xp,
            ) or [(w.term, w.translation) for w in lesson.words] != words:
                lesson.title, lesson.position, lesson.xp = lesson_item["title"], lesson_position, xp
                counts["changed"] += 1
            if [(w.term, w.translation) for w in lesson.words] != words:
                # Replaced whole: a word's position is its identity within the lesson.
                lesson.words.clear()
                db.session.flush()
                lesson.words.extend(
                    LessonWord(position=n, term=term, translation=translation)
                    for n, (term, translation) in enumerate(words)
                )
            counts["lessons"] += 1
        counts["modules"] += 1
    db.session.commit()
    return counts
