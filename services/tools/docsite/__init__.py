"""The documentation site's generated pages and drift checks (`lfr docs`, tests/test_docs_drift.py)."""
