"""MkDocs hook: links from a page to files outside docs/ (code, READMEs) become plain code paths.

Pages moved out of the README keep pointing at `services/...`, `schemas/README.md` and the like;
the site cannot serve those files, so the link is rendered as the path itself (greppable, and
`mkdocs build --strict` stays clean) while links between pages are left for MkDocs to check.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

_LINK = re.compile(r"(?<!!)\[([^\]]+)\]\((?!https?://|mailto:|#)([^)\s]+)\)")


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 - MkDocs hook signature
    docs_dir = Path(config["docs_dir"]).resolve()
    root = docs_dir.parent
    page_dir = posixpath.dirname(page.file.src_uri)

    def rewrite(match: re.Match) -> str:
        text, target = match.group(1), match.group(2)
        path = target.split("#", 1)[0]
        if not path:
            return match.group(0)
        resolved = (docs_dir / page_dir / path).resolve()
        if resolved.is_relative_to(docs_dir):
            return match.group(0)  # a page or asset of the site: MkDocs checks it
        try:
            shown = str(resolved.relative_to(root))
        except ValueError:
            shown = path
        return text if text.strip("`") == shown else f"{text} (`{shown}`)"

    return _LINK.sub(rewrite, markdown)
