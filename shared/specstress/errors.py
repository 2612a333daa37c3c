"""Errors that carry a message meant for the person running specstress."""


class InputError(Exception):
    """Bad user input (config, taxonomy, spec, CLI arguments): one line naming the problem."""


class BadModelOutput(Exception):
    """A model answered, but not in the contract the prompt asked for."""
