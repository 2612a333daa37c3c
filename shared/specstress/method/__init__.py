"""The paper's method as plain logic, with no database or bus: the taxonomy and value-pair
sampling, model specs and their sections, label vocabularies, answer parsing, judge-agreement
statistics and diversity selection (k-center).
"""
