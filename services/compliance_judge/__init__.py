"""Compliance: judges check flagged scenarios' answers against the spec of the model's family."""
