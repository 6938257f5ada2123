"""The unlock rule, decided once from a learner's completed set."""

from progress.curriculum import Curriculum, LessonRef, ModuleRef, is_lesson_accessible


def course() -> Curriculum:
    modules = []
    index = 0
    for m, slug in enumerate(("basics", "food")):
        lessons = []
        for n in range(3):
            lessons.append(
                LessonRef(id=10 * m + n, module_slug=slug, slug=f"l{n}", title="", index=index)
            )
            index += 1
        modules.append(ModuleRef(slug, slug.title(), tuple(lessons)))
    return Curriculum(tuple(modules))


def test_only_the_first_lesson_of_the_first_module_is_open_at_the_start():
    c = course()
    assert [is_lesson_accessible(c, set(), lesson) for lesson in c.lessons] == [
        True,
        False,
        False,
        False,
        False,
        False,
    ]


def test_a_lesson_opens_when_the_one_before_it_in_its_module_is_complete():
    c = course()
    assert is_lesson_accessible(c, {0}, c.find("basics", "l1"))
    assert not is_lesson_accessible(c, {0}, c.find("basics", "l2"))


def test_a_modules_first_lesson_opens_when_the_previous_modules_last_is_complete():
    c = course()
    first_of_food = c.find("food", "l0")
    assert not is_lesson_accessible(c, {0, 1}, first_of_food)
    assert is_lesson_accessible(c, {0, 1, 2}, first_of_food)


def test_a_completed_lesson_stays_open_even_if_its_predecessor_is_not_recorded():
    c = course()
    # e.g. a lesson inserted before it by a later curriculum version
    assert is_lesson_accessible(c, {2}, c.find("basics", "l2"))


def test_lookup_by_module_and_lesson_and_by_id():
    c = course()
    assert c.find("food", "l1").id == 11
    assert c.find("food", "missing") is None
    assert c.by_id(11).slug == "l1"
    assert c.has_module("food")
    assert not c.has_module("travel")
