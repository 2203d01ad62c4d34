"""One error type whose message is a single line a user can act on."""

from __future__ import annotations


class SclinbenchError(Exception):
    """A problem with the user's input or configuration.

    The message is one line: what is wrong (naming the file, column or key) and what to do.
    Workflow scripts print it without a traceback.
    """

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))



def refuse_foreign_options(options: dict[str, dict], kind: str, name: str, given, prefix: str = "") -> None:
    """Stop when ``given`` holds a key that choice ``name`` of ``options`` (choice -> its options)
    does not have, naming the choices it belongs to: an option is never silently dropped.

    Message: ``"<prefix><kind> '<name>' has no option 'k' (its options: ...); 'k' is an option of
    a, b: remove it, or choose the <kind> it belongs to"``."""
    valid = options[name]
    foreign = sorted(set(given) - set(valid))
    if not foreign:
        return
    owners = "; ".join(f"'{k}' is an option of {', '.join(c for c, o in options.items() if k in o)}"
                       for k in foreign if any(k in o for o in options.values()))
    raise SclinbenchError(
        f"{prefix}{kind} '{name}' has no option {', '.join(map(repr, foreign))} (its options: "
        f"{', '.join(valid) or 'none'})"
        + (f"; {owners}: remove it, or choose the {kind} it belongs to" if owners else "")
    )
