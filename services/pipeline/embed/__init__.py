"""Embed service: faces in, embeddings with the chip as evidence out."""
