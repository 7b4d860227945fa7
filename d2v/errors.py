"""Errors a user can act on. The CLI prints them as one line (no traceback unless --debug)."""


class D2VError(Exception):
    """Base class for user-facing errors: bad params, bad paths, bad data."""


class ConfigError(D2VError):
    """params.yaml (or an override) has an unknown, missing or mistyped key."""
