"""Matcher service: embeddings in, matches at or above the category threshold out."""
