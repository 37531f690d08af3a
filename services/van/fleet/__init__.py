"""The fleet: deployment bundles for vans (build, open, crypto-erase) and van keys (issue #26)."""
