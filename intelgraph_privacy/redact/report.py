"""What a redaction did (or, in preview, would do) to one response."""

from __future__ import annotations

from dataclasses import dataclass, field

from intelgraph_privacy.actions import Action


@dataclass(slots=True)
class RedactionReport:
    """Counts of values changed per (coordinate, action), and what was dropped."""

    counts: dict[tuple[str, Action], int] = field(default_factory=dict)
    #: Response keys the plan did not know (schema drift), dropped.
    unknown_keys: int = 0
    #: Upstream `errors[]` entries dropped because they point at or under a redacted path.
    dropped_errors: int = 0
    #: The operation was refused by a deny decision.
    denied: bool = False

    def total(self) -> int:
        """Values changed, in all."""
        return sum(self.counts.values())

    def by_coordinate(self) -> dict[str, dict[str, int]]:
        """`{"Person.ssn": {"null": 3}, ...}`, for logs, audit and preview responses."""
        out: dict[str, dict[str, int]] = {}
        for (coordinate, action), n in sorted(self.counts.items()):
            out.setdefault(coordinate, {})[action.value] = n
        return out

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready summary."""
        return {
            "redacted": self.by_coordinate(),
            "unknownKeys": self.unknown_keys,
            "droppedErrors": self.dropped_errors,
            "denied": self.denied,
        }
