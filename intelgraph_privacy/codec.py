"""The one JSON codec of the project (orjson), so every module encodes the same way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

JSONDecodeError = orjson.JSONDecodeError


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Decode JSON bytes or text."""
    return orjson.loads(data)


def dumps(
    value: Any, *, sort_keys: bool = False, default: Callable[[Any], Any] | None = None
) -> bytes:
    """Encode a value as compact UTF-8 JSON bytes (keys sorted when asked, for hashing).

    `default` converts values orjson cannot encode (for logs); without it they raise TypeError.
    """
    return orjson.dumps(value, default=default, option=orjson.OPT_SORT_KEYS if sort_keys else 0)
