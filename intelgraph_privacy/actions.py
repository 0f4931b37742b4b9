"""The vocabulary of what a field can become: the policy decides it, redaction applies it."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    """What happens to a field's value in a response."""

    KEEP = "keep"
    GENERALISE = "generalise"
    MASK = "mask"
    HASH = "hash"
    NULL = "null"
    DENY = "deny"


#: Actions from least to most protective; when several rules apply the strictest wins.
STRICTNESS: dict[Action, int] = {action: rank for rank, action in enumerate(Action)}


def strictest(actions: list[Action] | tuple[Action, ...] | set[Action]) -> Action:
    """The most protective of `actions` (`keep` when there are none)."""
    return max(actions, key=STRICTNESS.__getitem__, default=Action.KEEP)
