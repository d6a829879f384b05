"""The documentation site builds in strict mode and covers the public API.

``mkdocs build --strict`` fails on a broken link between pages, a link to a missing anchor,
a page missing from the navigation and an API reference (``::: name``) that mkdocstrings
cannot resolve; the notebook is rendered from its stored cells, not executed.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import photonic

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"

# Words that narrate how the project was made rather than what it is (README and docs only
# describe the toolkit; results are stated with the command and config that reproduce them).
HISTORY = re.compile(r"\b(sessions?|rounds? of work|issue \d+)\b", re.IGNORECASE)


def _pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def test_site_builds_strict(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict",
         "--config-file", str(REPO / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    site = tmp_path / "site"
    api = (site / "api" / "index.html").read_text()
    unrendered = [i for i in _api_identifiers() if f'id="{i}"' not in api]
    assert not unrendered, f"API entries missing from the built page: {unrendered}"
    notebook = (site / "notebooks" / "mesh_size_sweep" / "index.html").read_text()
    assert "Mesh-size sweep" in notebook and "run_sweep" in notebook


def _resolve(identifier: str):
    """The object a mkdocstrings identifier names: the longest importable module prefix,
    then attributes."""
    parts = identifier.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(identifier)


def _api_identifiers() -> list[str]:
    return re.findall(r"^::: ([\w.]+)\s*$", (DOCS / "api.md").read_text(), flags=re.MULTILINE)


def test_api_reference_covers_public_api():
    documented = [_resolve(i) for i in _api_identifiers()]
    missing = [name for name in photonic.__all__
               if not any(getattr(photonic, name) is obj for obj in documented)]
    assert not missing, f"docs/api.md has no '::: ...' entry for photonic.{missing}"


def test_readme_is_a_user_guide():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    top = readme.splitlines()[2:6]
    assert top == ["```bash",
                   'pip install -c constraints.txt -e . && photonic-sim run pinn_burgers.yaml',
                   'pip install -c constraints.txt -e ".[test]" && pytest -q',
                   "```"]


@pytest.mark.parametrize("name", ["README.md", "CONTRIBUTING.md"])
def test_repository_pages_link_to_existing_files(name):
    text = (REPO / name).read_text()
    targets = [t for t in re.findall(r"\]\(([^)\s]+)\)", text)
               if not t.startswith(("http://", "https://", "#"))]
    broken = [t for t in targets if not (REPO / t.split("#")[0]).exists()]
    assert not broken, f"{name} links to missing files: {broken}"


@pytest.mark.parametrize("path", [REPO / "README.md", REPO / "CONTRIBUTING.md", *_pages()],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_no_history_words_and_no_paths_outside(path):
    text = path.read_text()
    hits = [m.group(0) for m in HISTORY.finditer(text)]
    assert not hits, f"{path.name}: words about how the project was made: {hits}"
    assert "../shared" not in text, f"{path.name} references a path outside the repository"


def test_every_shipped_config_is_listed():
    listed = (DOCS / "cli.md").read_text()
    missing = sorted(p.name for p in (REPO / "configs").glob("*.yaml") if p.name not in listed)
    assert not missing, f"docs/cli.md 'Shipped configs' lacks {missing}"


def test_every_workload_has_a_page():
    from photonic.cli import WORKLOADS

    pages = "".join(p.read_text() for p in (DOCS / "workloads").glob("*.md"))
    missing = sorted(kind for kind in WORKLOADS if f"(`kind: {kind}`)" not in pages)
    assert not missing, f"no docs/workloads page is titled with kind {missing}"
