"""Watchlist: governed entries, the compacted topic that is their source of truth, the Qdrant index."""
