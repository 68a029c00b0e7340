"""Exceptions the library raises for users' mistakes and device trouble.

The CLI maps each to a one-line message and a documented exit code (see README "Exit codes").
"""


class RoadnodeError(Exception):
    """Base class; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class InputError(RoadnodeError):
    """Bad user input: unreadable file, malformed data, invalid value. Exit code 2."""

    exit_code = 2


class DeviceError(RoadnodeError):
    """The board could not be reached or answered wrongly. Exit code 3."""

    exit_code = 3


class CheckFailed(RoadnodeError):
    """A verification the user asked for did not pass (hash mismatch, accuracy). Exit code 1."""

    exit_code = 1
