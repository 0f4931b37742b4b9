"""The value transforms of redaction: mask, keyed pseudonym (hash) and generalise.

Each returns the replacement value, or None when the value cannot be transformed safely (the
caller then nulls the field: fail closed).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re

#: Characters that survive masking, so `123-45-6789` becomes `***-**-6789` and keeps its shape.
_MASKED_CHARS = re.compile(r"[^-.@ +()/:_]")
#: Masking keeps the last characters only when at least as many are hidden.
MASK_VISIBLE = 4
_ISO_DATE = re.compile(r"^(\d{4})-\d{2}-\d{2}(?:[T ][0-9:.+\-Z]*)?$")
_INT31 = 0x7FFFFFFF


#: Separators that survive masking; every other character becomes `*`.
MASK_SEPARATORS = "-.@ +()/:_"
_ASCII_MASK = str.maketrans({chr(c): "*" for c in range(128) if chr(c) not in MASK_SEPARATORS})


def mask(value: object) -> str | None:
    """Mask a string, keeping its last 4 characters and separators; non-strings become None."""
    if type(value) is not str:
        return None
    visible = MASK_VISIBLE if len(value) >= 2 * MASK_VISIBLE else 0
    cut = len(value) - visible
    head = value[:cut]
    # translate is ~4x faster than the regex; the regex covers non-ASCII text.
    masked = head.translate(_ASCII_MASK) if head.isascii() else _MASKED_CHARS.sub("*", head)
    return masked + value[cut:]


class Pseudonymizer:
    """Keyed HMAC-SHA256 pseudonyms: the same value and key always give the same pseudonym.

    Values repeat in responses (the same employer on many people), so recent pseudonyms are
    remembered in a bounded dict; the HMAC key schedule is computed once.
    """

    __slots__ = ("_keyed", "cache", "cache_size")

    def __init__(self, key: bytes, *, cache_size: int = 65536) -> None:
        if len(key) < 16:
            raise ValueError("the pseudonym key must be at least 16 bytes")
        # A keyed HMAC to copy per value: copying skips the key schedule.
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)
        self.cache: dict[object, str | int] = {}
        self.cache_size = cache_size

    def __call__(self, value: object) -> str | int | None:
        """Strings and IDs become 32 hex characters; integers a 31-bit integer; else None."""
        kind = type(value)
        if kind is not str and kind is not int:
            return None
        cached = self.cache.get(value)
        if cached is not None:
            return cached
        digest = self._digest(value if kind is str else str(value))  # type: ignore[arg-type]
        result: str | int = (
            digest.hex()[:32] if kind is str else int.from_bytes(digest[:4], "big") & _INT31
        )
        if len(self.cache) >= self.cache_size:
            self.cache.clear()
        self.cache[value] = result
        return result

    def _digest(self, text: str) -> bytes:
        mac = self._keyed.copy()
        mac.update(text.encode("utf-8"))
        return mac.digest()


def generalise(value: object, band: float) -> int | float | str | None:
    """Numbers to the start of their band (37 -> 30 for band 10); ISO dates to their year."""
    kind = type(value)
    if kind is int:
        # Integers stay integers (an Int field must not turn into a Float).
        if float(band).is_integer():
            step = int(band)
            return (value // step) * step  # type: ignore[operator]
        try:
            return int(math.floor(value / band) * band)  # type: ignore[operator]
        except OverflowError:  # too large for a float: cannot be generalised safely
            return None
    if kind is float:
        scaled = value / band  # type: ignore[operator]
        if not math.isfinite(scaled):
            return None
        return float(math.floor(scaled) * band)
    if isinstance(value, str):
        match = _ISO_DATE.match(value)
        return match.group(1) if match else None
    return None
