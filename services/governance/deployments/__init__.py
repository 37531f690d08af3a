"""Deployments: authorised, time-boxed LFR operations every service enforces (issue #10)."""
