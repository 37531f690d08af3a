"""The transparency report: per-deployment figures in the format forces publish."""
