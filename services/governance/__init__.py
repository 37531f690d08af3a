"""The governance layer: who may be looked for, where and on whose authority, per force; signed, audited and kept no longer than allowed."""
