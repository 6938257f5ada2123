"""The docs stand alone: the README stays a front door, every relative link in the Markdown
files leads to a file (and a heading) inside the repository, and no file names a document
that only exists outside it."""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 200
# Directories that are not the project's own files when the tree is walked without git.
UNTRACKED_DIRS = {".git", ".venv", "node_modules", "instance", "test-artifacts", "__pycache__"}
TEXT_SUFFIXES = {
    ".md", ".py", ".txt", ".toml", ".cfg", ".ini", ".yml", ".yaml", ".json", ".html",
    ".js", ".ts", ".css", ".sh", ".example", ".mako", "",
}  # fmt: skip

# A Markdown link or image: [text](target) or ![alt](target), target without spaces.
MD_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
# A Markdown file named in any text: a path ending in .md (optionally with an anchor).
MD_NAME = re.compile(r"(?<![\w./-])((?:\.{1,2}/)*[\w./-]*[\w-]\.md)\b")
# A repository path in a code span of the docs: `progress/...`, `tests/test_x.py::test_y`.
REPO_PATH = re.compile(
    r"`((?:progress|tests|lab|bench|harness|devtools|grafana|prometheus|templates|migrations"
    r"|docs)/[\w./-]*[\w/])(?:::\w+)?`"
)
# Documents outside the repository that files once pointed at.
OUTSIDE = re.compile(r"\.\./shared\b|\bshared/design\.md")


@cache
def text_files() -> tuple[Path, ...]:
    """The repository's own text files: git's tracked files, or the tree without tool dirs."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout.decode()
        paths = [ROOT / name for name in listed.split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        paths = [
            p for p in ROOT.rglob("*") if not UNTRACKED_DIRS.intersection(p.relative_to(ROOT).parts)
        ]
    return tuple(
        sorted(
            p
            for p in paths
            if p.is_file() and (p.suffix in TEXT_SUFFIXES or p.name.endswith(".example"))
        )
    )


def read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return ""


def markdown_files() -> list[Path]:
    return [p for p in text_files() if p.suffix == ".md"]


def slug(heading: str) -> str:
    """A heading's anchor as GitHub and most viewers make it."""
    return re.sub(r"[^\w\- ]", "", heading).strip().lower().replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    text = re.sub(r"^```.*?^```", "", read(path), flags=re.MULTILINE | re.DOTALL)
    return frozenset(slug(h) for h in re.findall(r"^#+\s+(.+?)\s*#*$", text, re.MULTILINE))


def relative_links(path: Path) -> list[str]:
    """Links that stay on this site: not a URL scheme, not a mail address."""
    text = re.sub(r"^```.*?^```", "", read(path), flags=re.MULTILINE | re.DOTALL)
    text = re.sub(r"`[^`\n]*`", "", text)  # code spans are not links
    return [
        target
        for target in MD_LINK.findall(text)
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE)
    ]


def link_problem(source: Path, target: str) -> str | None:
    """Why `target`, linked from `source`, doesn't resolve inside the repository (or None)."""
    where, _, anchor = target.partition("#")
    destination = (source.parent / where).resolve() if where else source
    if not destination.is_relative_to(ROOT):
        return "points outside the repository"
    if not destination.exists():
        return "no such file"
    if anchor and destination.suffix == ".md" and anchor not in anchors(destination):
        return f"no heading #{anchor} in {destination.relative_to(ROOT)}"
    return None


def test_the_readme_is_a_front_door():
    lines = read(ROOT / "README.md").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines; keep it at most {README_MAX_LINES} and move "
        "details into docs/"
    )


def test_the_readme_and_the_docs_exist():
    assert (ROOT / "README.md") in markdown_files()
    assert (ROOT / "docs" / "design.md") in markdown_files()


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves_inside_the_repository(path):
    problems = [
        f"{target}: {problem}"
        for target in relative_links(path)
        if (problem := link_problem(path, target)) is not None
    ]
    assert not problems, f"{path.relative_to(ROOT)}: " + "; ".join(problems)


def test_no_file_points_outside_the_repository():
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in text_files()
        if path != Path(__file__).resolve()
        for number, line in enumerate(read(path).splitlines(), start=1)
        if OUTSIDE.search(line)
    ]
    assert not found, "files refer outside the repository:\n" + "\n".join(found)


def test_every_markdown_file_a_file_names_is_in_the_repository():
    """A Markdown file named anywhere (a comment, a docstring, a doc) is a file here: by its
    path from the naming file or from the root, or by its name alone (`design.md`)."""
    names = {p.name for p in markdown_files()}
    missing = []
    for path in text_files():
        for number, line in enumerate(read(path).splitlines(), start=1):
            for name in MD_NAME.findall(line):
                if "://" in line and re.search(r"https?://\S*" + re.escape(name), line):
                    continue  # part of a web address, not a file here
                candidates = ((path.parent / name).resolve(), (ROOT / name).resolve())
                inside = [c for c in candidates if c.is_relative_to(ROOT) and c.exists()]
                if not inside and ("/" in name or name not in names):
                    missing.append(f"{path.relative_to(ROOT)}:{number}: {name}")
    assert not missing, "Markdown files named but not in the repository:\n" + "\n".join(missing)


def test_every_repository_path_the_docs_name_exists():
    """The docs name modules, tests and files by their path: a move or a rename updates them."""
    missing = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in markdown_files()
        for name in REPO_PATH.findall(read(path))
        if not (ROOT / name).exists()
    ]
    assert not missing, "paths the docs name that don't exist:\n" + "\n".join(missing)


def test_every_setting_is_documented_in_the_design():
    """`.env.example` lists every setting the service reads; docs/design.md explains each."""
    example = read(ROOT / ".env.example")
    # (`# NAME=`: a setting whose default needs it unset, listed all the same)
    names = re.findall(r"^(?:#\s*)?([A-Z][A-Z0-9_]*)=", example, flags=re.MULTILINE)
    design = read(ROOT / "docs" / "design.md")
    assert names
    undocumented = [name for name in names if f"`{name}`" not in design]
    assert not undocumented, f"settings missing from docs/design.md: {undocumented}"


# Labels whose values are open-ended (route templates, methods, codes, histogram buckets).
OPEN_LABELS = {"method", "route", "status", "le"}


def test_every_metric_family_and_label_is_documented_in_the_design(sqlite_app_session):
    """What /metrics exports (names, labels, label values) is in docs/design.md's table."""
    text = sqlite_app_session.test_client().get("/metrics").get_data(as_text=True)
    design = read(ROOT / "docs" / "design.md")
    missing = set()
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("progress_") or family.name.endswith("_created"):
            continue  # (`_created`: the client's creation times, outside multiprocess mode)
        name = family.name + ("_total" if family.type == "counter" else "")
        if f"`{name}`" not in design:
            missing.add(name)
        for sample in family.samples:
            for label, value in sample.labels.items():
                if label not in OPEN_LABELS and f"`{value}`" not in design:
                    missing.add(f"{name}{{{label}={value!r}}}")
    assert not missing, f"not in docs/design.md: {sorted(missing)}"
