"""The paper's method as plain logic, with no database or bus: the taxonomy and value-pair
sampling, model specs and their sections, label vocabularies, answer parsing, disagreement D,
judge-agreement statistics and diversity selection (k-center).
"""
