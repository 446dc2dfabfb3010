"""Code and tests cite the repository's own ``docs/`` (issue #28): every cited
page and heading exists, and nothing points outside the repository."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: the engineers' reference folder, outside the repository (spelt so that this
#: file does not cite it)
SPECS = "specs" + "/"
_ANCHORED = re.compile(r"docs/([\w/]+\.md)#([\w-]+)")
_QUOTED = re.compile(r'docs/([\w/]+\.md), "([^"]+)"')
_PAGE = re.compile(r"docs/([\w/]+\.md)")


def _sources():
    for folder in ("src", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path.read_text()


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _headings(page: str) -> list[str]:
    text = (ROOT / "docs" / page).read_text()
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)  # code blocks
    return [m.group(1) for m in re.finditer(r"^#+ (.+)$", text, flags=re.M)]


def test_every_cited_docs_page_and_heading_exists():
    missing = []
    for name, text in _sources():
        for page in _PAGE.findall(text):
            if not (ROOT / "docs" / page).is_file():
                missing.append(f"{name}: docs/{page}")
        for page, anchor in _ANCHORED.findall(text):
            if (ROOT / "docs" / page).is_file():
                if anchor not in {_slug(h) for h in _headings(page)}:
                    missing.append(f"{name}: docs/{page}#{anchor}")
        for page, title in _QUOTED.findall(text):
            title = " ".join(title.replace("#", " ").split())
            if (ROOT / "docs" / page).is_file():
                if not any(h.startswith(title) for h in _headings(page)):
                    missing.append(f'{name}: docs/{page}, "{title}"')
    assert not missing, "citations of missing docs or headings: " + "; ".join(missing)


def test_code_and_tests_do_not_cite_specs_outside_the_repository():
    citing = {name for name, text in _sources() if SPECS in text}
    assert not citing, f"cite docs/, not {SPECS}: {sorted(citing)}"


def test_readme_and_docs_do_not_point_outside_the_repository():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    bad = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in pages
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(SPECS + r"[a-z_]+\.md|shared/", line)
    ]
    assert not bad, f"README/docs point outside the repository: {bad}"
