"""Errors meant for people: each carries a message a business user can act on."""


class CaiError(Exception):
    """A problem the user can understand and fix; its message is shown as is."""


class StoreBusy(CaiError):
    """The database stayed locked by another job for longer than we are willing to wait."""


class SchemaTooNew(CaiError):
    """The database file was written by a newer version of the app."""


class ValidationError(CaiError):
    """Input that cannot be accepted; `problems` lists what is wrong, most important first."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or []


class NotFound(CaiError):
    """A named thing (instance, segment, profile) does not exist."""
