"""The documentation site builds in strict mode: a broken link or anchor, a page missing from the nav, or an
API reference that no longer matches the code fails here, as it would fail the docs build."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_docs_site_builds_strict(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # mkdocs-material's end-of-life banner, not a warning
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                           str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    # every page of the nav was rendered, the API reference from the docstrings among them
    for page in ("index.html", "getting_started/index.html", "recipes/index.html", "troubleshooting/index.html",
                 "losses_scaled_bt/index.html", "api/training/index.html"):
        assert (site / page).is_file(), page
    api = (site / "api" / "training" / "index.html").read_text()
    assert "Train a reward model from a config" in api  # rmlib.training.train's docstring, rendered


def test_every_docs_page_is_reachable_from_the_index():
    index = (ROOT / "docs" / "index.md").read_text()
    pages = sorted(p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").glob("*.md"))
    missing = [p for p in pages if p != "index.md" and f"]({p}" not in index]
    assert not missing, f"docs/index.md does not link {missing}"
