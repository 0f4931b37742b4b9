"""The value transforms of redaction: mask, keyed pseudonym (hash) and generalise.

Each returns the replacement value, or None when the value cannot be transformed safely (the
caller then nulls the field: fail closed).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from dataclasses import dataclass

#: Characters that survive masking, so `123-45-6789` becomes `***-**-6789` and keeps its shape.
_MASKED_CHARS = re.compile(r"[^-.@ +()/:_]")
#: Masking keeps the last characters only when at least as many are hidden.
MASK_VISIBLE = 4
_ISO_DATE = re.compile(r"^(\d{4})-\d{2}-\d{2}(?:[T ][0-9:.+\-Z]*)?$")
_INT31 = 0x7FFFFFFF


def mask(value: object) -> str | None:
    """Mask a string, keeping its last 4 characters and separators; non-strings become None."""
    if type(value) is not str:
        return None
    visible = MASK_VISIBLE if len(value) >= 2 * MASK_VISIBLE else 0
    cut = len(value) - visible
    return _MASKED_CHARS.sub("*", value[:cut]) + value[cut:]


@dataclass(frozen=True, slots=True)
class Pseudonymizer:
    """Keyed HMAC-SHA256 pseudonyms: the same value and key always give the same pseudonym."""

    key: bytes

    def __post_init__(self) -> None:
        if len(self.key) < 16:
            raise ValueError("the pseudonym key must be at least 16 bytes")

    def __call__(self, value: object) -> str | int | None:
        """Strings and IDs become 32 hex characters; integers a 31-bit integer; else None."""
        kind = type(value)
        if kind is str:
            return self._digest(value).hex()[:32]  # type: ignore[arg-type]
        if kind is int:
            return int.from_bytes(self._digest(str(value))[:4], "big") & _INT31
        return None

    def _digest(self, text: str) -> bytes:
        return hmac.new(self.key, text.encode("utf-8"), hashlib.sha256).digest()


def generalise(value: object, band: float) -> int | float | str | None:
    """Numbers to the start of their band (37 -> 30 for band 10); ISO dates to their year."""
    kind = type(value)
    if kind is int:
        # Integers stay integers (an Int field must not turn into a Float).
        if float(band).is_integer():
            step = int(band)
            return (value // step) * step  # type: ignore[operator]
        return int(math.floor(value / band) * band)  # type: ignore[operator]
    if kind is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            return None
        return math.floor(value / band) * band  # type: ignore[operator]
    if isinstance(value, str):
        match = _ISO_DATE.match(value)
        return match.group(1) if match else None
    return None
