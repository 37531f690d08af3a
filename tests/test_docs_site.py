"""The documentation site (mkdocs.yml, docs/) builds with warnings as errors: a broken link
between pages, a missing anchor, a page left out of the navigation or a nav entry without a
page fails `make test`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[dev]' installs it)")
pytest.importorskip("material", reason="mkdocs-material is not installed (pip install -e '.[dev]' installs it)")


@pytest.mark.slow
def test_the_site_builds_strictly(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-4000:]
    for page in ("index.html", "platform/index.html", "operations/index.html", "officers/index.html",
                 "assurance/index.html", "integrators/index.html", "evaluators/index.html", "runbook/index.html",
                 "topics/index.html", "asyncapi.yaml"):
        assert (tmp_path / "site" / page).is_file(), page


def test_links_to_code_become_paths(tmp_path):
    """Pages moved out of the README link to code (`services/...`); the hook renders those as the
    path, so the strict build does not fail on them, and leaves links between pages alone."""
    from types import SimpleNamespace

    from services.tools.docsite.hooks import on_page_markdown

    page = SimpleNamespace(file=SimpleNamespace(src_uri="integrators/index.md"))
    text = ("[schemas](../../schemas/README.md) and [`services/pipeline/dispatch/README.md`](../../services/pipeline/dispatch/README.md#x) "
            "and [topics](../topics.md#lfralertsv3) and ![shot](../review-console.png) and [site](https://example.org)")
    out = on_page_markdown(text, page, {"docs_dir": str(ROOT / "docs")}, None)
    assert "schemas (`schemas/README.md`)" in out
    assert "`services/pipeline/dispatch/README.md` and" in out
    assert "[topics](../topics.md#lfralertsv3)" in out and "![shot](../review-console.png)" in out
    assert "[site](https://example.org)" in out


def test_the_readme_is_a_front_door_with_one_click_per_reader():
    """Every relative link of the README reaches a file (and its anchor, for site pages), and each
    reader's page is linked from it directly."""
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200, "the README is a front door; move detail into docs/"
    for target in re.findall(r"\]\((?!https?://)([^)\s]+)\)", readme):
        path, _, anchor = target.partition("#")
        assert (ROOT / path).exists(), f"README links to missing {path}"
        if anchor and path.endswith(".md"):
            headings = re.findall(r"^#+ (.+)$", (ROOT / path).read_text(encoding="utf-8"), re.MULTILINE)
            slugs = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}
            assert anchor in slugs, f"README links to {target}: no such heading"
    for reader in ("platform", "operations", "officers", "assurance", "integrators", "evaluators"):
        assert f"](docs/{reader}/index.md)" in readme, reader
