"""Scenario generation: a value pair becomes a neutral user query and two value-leaning variants."""
