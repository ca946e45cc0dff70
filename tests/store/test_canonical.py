"""The fast canonical JSON writes exactly the bytes of the RFC 8785 library, whatever the value."""

from __future__ import annotations

from typing import Any

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.canonical import dumps, integer, string

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4)
)


@settings(max_examples=500)
@given(values)
def test_the_same_bytes_as_the_library(value: Any) -> None:
    try:
        expected = rfc8785.dumps(value)
    except Exception as exc:  # noqa: BLE001 - whatever the library refuses, the fast path refuses the same way
        try:
            dumps(value)
        except type(exc):
            return
        raise AssertionError(f"accepted what the library refuses: {value!r}") from None
    assert dumps(value) == expected


def test_keys_outside_the_bmp_sort_by_utf16_code_units() -> None:
    value = {"\U0001f600": 1, "\uffff": 2}  # code points order them the other way
    assert dumps(value) == rfc8785.dumps(value) == '{"\U0001f600":1,"\uffff":2}'.encode()


def test_floats_and_big_integers_take_the_library_s_form() -> None:
    for value in ({"x": 1.0}, {"x": 1e21}, {"x": 2**53 - 1}, {"x": 0.1}, ["1.5e3", 5]):
        assert dumps(value) == rfc8785.dumps(value)


def test_number_like_text_inside_strings_never_hides_a_number_outside_them() -> None:
    # The quick scan splits on '"' only when no backslash can escape one; these need either path to be right.
    for value in (
        {"a": "1.5e3", "b": 7},
        {"a\\": 'x"1.5', "b": 2.5},
        ['\\"', 1e16, "12345678901234567"],
        {"t": "2026-03-02T09:00:00.123Z", "n": 9007199254740991},
        {"\u00e9": "9.5", "x": [1, 2.0]},
    ):
        assert dumps(value) == rfc8785.dumps(value)


@settings(max_examples=300)
@given(st.text() | st.integers(min_value=-(2**64), max_value=2**64))
def test_one_string_or_integer_takes_the_library_s_form(value: str | int) -> None:
    fast = string if isinstance(value, str) else integer
    try:
        expected = rfc8785.dumps(value)
    except Exception as exc:  # noqa: BLE001 - what the library refuses, the fast form refuses the same way
        try:
            fast(value)  # type: ignore[arg-type]
        except type(exc):
            return
        raise AssertionError(f"accepted what the library refuses: {value!r}") from None
    assert fast(value) == expected  # type: ignore[arg-type]
