"""Running the system and answering for it: the officers' review console, the transparency report, dead-letter tooling."""
