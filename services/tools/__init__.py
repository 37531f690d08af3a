"""Try it, measure it and document it: the local demo, lfr eval, the documentation site's generated pages and drift checks (lfr docs)."""
