"""The error of bad user input, in a module of its own so that the command line can catch it
without importing pydantic (`bindbench --help` starts fast)."""


class SpecError(ValueError):
    """Bad user input: an unknown key, a wrong type, an impossible value or file."""
