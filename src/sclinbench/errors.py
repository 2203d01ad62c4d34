"""One error type whose message is a single line a user can act on."""

from __future__ import annotations


class SclinbenchError(Exception):
    """A problem with the user's input or configuration.

    The message is one line: what is wrong (naming the file, column or key) and what to do.
    Workflow scripts print it without a traceback.
    """

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def owners_of(options: dict[str, dict], keys) -> str:
    """For options given to the wrong choice: "'k' is an option of a, b; ...: remove it, or choose
    the one it belongs to" (empty when no other choice has them). ``options``: choice -> its options."""
    owners = [f"'{k}' is an option of {', '.join(c for c, o in options.items() if k in o)}"
              for k in keys if any(k in o for o in options.values())]
    return "; ".join(owners)
