"""Detect service: frames in, quality-accepted aligned faces out."""
