"""Aggregation: disagreement per scenario and model set, recomputed from the classifications."""
