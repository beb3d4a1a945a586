"""Errors the CLI turns into a one-line message and a non-zero exit (never a traceback)."""


class HarnessError(Exception):
    """Base class: anything the user can fix gets one of these."""

    exit_code = 1


class UsageError(HarnessError):
    """Bad input: unknown name, impossible grid, malformed data file."""

    exit_code = 2


class EndpointError(HarnessError):
    """The model endpoint is unreachable, refused the request, or died."""

    exit_code = 3


class Interrupted(HarnessError):
    """Ctrl-C: what was finished is saved, and the message says how to go on."""

    exit_code = 130
