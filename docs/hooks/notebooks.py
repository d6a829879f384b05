"""MkDocs hook: publish the repository's notebooks (``notebooks/*.ipynb``) as pages.

The notebooks live beside the packages, where the test suite executes them; this hook adds
them to the site's files under ``notebooks/`` so that mkdocs-jupyter renders them (without
executing them) and pages can link to ``notebooks/<name>.ipynb``. It runs before
mkdocs-jupyter's own ``on_files`` (higher priority), which turns them into notebook pages.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

REPO = Path(__file__).resolve().parents[2]


@event_priority(100)
def on_files(files, config):
    for nb in sorted((REPO / "notebooks").glob("*.ipynb")):
        files.append(File(f"notebooks/{nb.name}", src_dir=str(REPO), dest_dir=config.site_dir,
                          use_directory_urls=config.use_directory_urls))
    return files
