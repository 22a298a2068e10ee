"""Errors that carry a user-facing instruction; the CLI prints them without a traceback."""


class PDDError(Exception):
    """An expected failure whose message says what went wrong and what to do about it."""


class ConfigError(PDDError, ValueError):
    """A params value is unknown, of the wrong type or out of range; the message names the key."""


class DataError(PDDError):
    """Raw or prepared data is missing, corrupt or laid out unexpectedly."""


class WeightsError(PDDError):
    """Pretrained weights are missing, mismatched (sha256) or of another architecture."""
