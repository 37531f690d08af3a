"""Privacy by construction, checked: the dead-letter payload rule, the retention verdict behind
`lfr topics verify`, and `lfr privacy audit`, which reads every store for strangers' data."""
