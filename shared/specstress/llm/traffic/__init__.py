"""Provider pacing and money: fleet-wide rate limits, provider pauses, the run budget, costs.

Each module holds one part of the rule a paid call passes before it starts; `store` is their SQL.
"""
