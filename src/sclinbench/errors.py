"""One error type whose message is a single line a user can act on."""

from __future__ import annotations


class SclinbenchError(Exception):
    """A problem with the user's input or configuration.

    The message is one line: what is wrong (naming the file, column or key) and what to do.
    Workflow scripts print it without a traceback.
    """

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
