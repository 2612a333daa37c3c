"""Analysis over the stored facts: the paper's tables and figures as reports, the queries behind
them, run summaries, diversity selections and the mapping of values to taxonomy categories.
"""
