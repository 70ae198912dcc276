"""Typed errors raised at reidsim's public boundaries.

Every message says what was received, what was expected and how to fix it.
"""


class ReidsimError(Exception):
    """Base class for all reidsim errors."""


class ConfigError(ReidsimError, ValueError):
    """An impossible or unknown scenario/config value."""


class InputError(ReidsimError, ValueError):
    """Malformed input data: a file, table or geometry that cannot be used."""


class CRSError(InputError):
    """Missing or unsuitable coordinate reference system."""
