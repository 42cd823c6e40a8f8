"""Errors users meet; each message is one line naming what to fix."""


class SvdError(Exception):
    """Base for errors the CLI prints as one line (no traceback)."""


class WeightsError(SvdError):
    """Configured pretrained weights are missing or unusable; the message names the params key to fix."""


class InputError(SvdError):
    """An input folder or file is missing, empty or of the wrong kind."""


class ConfigError(ValueError):
    """A params file or override that cannot be used; the message says which key and why."""
