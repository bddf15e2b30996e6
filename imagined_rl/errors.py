"""Errors caused by what the user typed, as opposed to bugs in the code.

The command line catches :class:`UserError` and prints ``imagined-rl: error: <message>`` with no
traceback, so every such message must be one line that says what is wrong and how to fix it. Any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Sequence


def _one_line(message: str) -> str:
    """Joins the lines of ``message`` with spaces: a stray newline must not break the CLI format."""
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


class UserError(Exception):
    """An error caused by user input (a flag, a name, a config file), fixable by the user.

    ``str(error)`` is always a single line that says what is wrong and how to fix it.
    """

    def __init__(self, message: str) -> None:
        super().__init__(_one_line(message))

    @property
    def message(self) -> str:
        """The one-line message (the same as ``str(self)``)."""
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        return self.message


class UnknownNameError(UserError, LookupError):
    """A registered name (hparams set, problem, env, model, hparam) that does not exist.

    It is a ``LookupError`` so that code may catch it as such; unlike ``KeyError`` its ``str()``
    is the plain message, not the quoted ``repr`` of it.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str | None = None,
        name: str | None = None,
        suggestions: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.name = name
        self.suggestions = tuple(suggestions)

    def __str__(self) -> str:
        return self.message
