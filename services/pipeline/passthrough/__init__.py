"""Pass-through service: copies messages unchanged (mirroring, replaying a dead-letter backlog)."""
