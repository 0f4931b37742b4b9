"""The value transforms: mask, keyed pseudonym, generalise."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from intelgraph_privacy.redact import Pseudonymizer, generalise, mask


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("123-45-6789", "***-**-6789"),
        ("maria.keller@example.org", "*****.******@*******.org"),
        ("+1 (202) 555-0147", "+* (***) ***-0147"),
        ("Bob", "***"),  # short strings: nothing stays visible
        ("abcdefg", "*******"),
        ("José Müller 😀 xyz", "**** ****** * xyz"),  # non-ASCII letters and emoji too
    ],
)
def test_mask_keeps_only_the_last_four_and_separators(value: str, masked: str) -> None:
    assert mask(value) == masked


@given(st.text())
def test_mask_never_reveals_more_than_the_last_four_characters(value: str) -> None:
    out = mask(value)
    assert out is not None and len(out) == len(value)
    visible = 4 if len(value) >= 8 else 0
    for i, (a, b) in enumerate(zip(value, out, strict=True)):
        if i < len(value) - visible:
            assert b == "*" or (a == b and a in "-.@ +()/:_")


@pytest.mark.parametrize("value", [5, 1.5, True, None, ["a"], {"a": 1}])
def test_mask_of_non_strings_is_none(value: object) -> None:
    assert mask(value) is None


def test_pseudonyms_are_stable_per_key_and_differ_across_keys() -> None:
    a, b = Pseudonymizer(b"k" * 16), Pseudonymizer(b"j" * 16)
    assert a("P-1") == a("P-1") != a("P-2")
    assert a("P-1") != b("P-1")
    assert isinstance(a(42), int) and 0 <= a(42) < 2**31  # type: ignore[operator]
    assert a(42) == a(42)
    assert a(1.5) is None and a(True) is None and a(None) is None
    with pytest.raises(ValueError):
        Pseudonymizer(b"short")


@pytest.mark.parametrize(
    ("value", "band", "expected"),
    [
        (37, 10, 30),
        (-3, 10, -10),
        (37, 2.5, 35),
        (72.5, 10, 70.0),
        ("1987-03-14", 10, "1987"),
        ("1987-03-14T10:22:00Z", 10, "1987"),
        ("not a date", 10, None),
        (True, 10, None),
        (float("nan"), 10, None),
        (None, 10, None),
    ],
)
def test_generalise(value: object, band: float, expected: object) -> None:
    out = generalise(value, band)
    assert out == expected
    if isinstance(value, int) and not isinstance(value, bool):
        assert type(out) is int


@given(st.integers(-(10**9), 10**9), st.integers(1, 1000))
def test_generalised_integers_are_band_starts_below_the_value(value: int, band: int) -> None:
    out = generalise(value, band)
    assert isinstance(out, int)
    assert out % band == 0 and out <= value < out + band
