"""The local demo: everything on embedded defaults, one command."""
