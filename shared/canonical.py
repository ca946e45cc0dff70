"""RFC 8785 (JCS) canonical JSON, fast for the values events hold.

`rfc8785.dumps` is pure Python: about 45 us for one event, most of what a writer signature cost on the append
path. For a value with no float, no integer of 16 digits or more and no character outside the Basic Multilingual Plane,
`json.dumps` with sorted keys and no spaces writes the same bytes (JCS sorts keys by UTF-16 code units, which is
code-point order inside the BMP; both escape only `"`, `\\` and control characters, in lowercase `\\u00xx` or the
short forms); `json.dumps` writes the value, and what it wrote decides. Anything else goes to the library (tests/store/test_canonical.py compares both on random values).
"""

from __future__ import annotations

import json
import re
from typing import Any

import rfc8785

_ENCODE = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False).encode
_STRINGS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')  # unrolled: no alternation per character
# Outside strings: a float (a digit next to a point or an exponent) or an integer of 16 digits or more (2**53 has
# 16) is where ES6 number formatting may differ from Python's.
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
_NUMBER_TO_CHECK = re.compile(r"\d[.eE]|\d{16}")


_ESCAPE = json.encoder.encode_basestring  # in C: escapes exactly what JCS escapes, in the same forms
_SAFE_INT = 2**53


def string(value: str) -> bytes:
    """The RFC 8785 bytes of one string: `dumps` without the scan that only numbers and keys need."""
    try:
        return _ESCAPE(value).encode()
    except UnicodeEncodeError:  # a lone surrogate: the library says what to do with it
        return rfc8785.dumps(value)


def integer(value: int) -> bytes:
    """The RFC 8785 bytes of one integer (ES6 writes one below 2**53 as Python does)."""
    return b"%d" % value if -_SAFE_INT < value < _SAFE_INT else rfc8785.dumps(value)


def _plain(text: str) -> bool:
    """Whether JSON text holds no character outside the BMP and, outside its strings, no float or long integer."""
    if not text.isascii() and _ASTRAL.search(text):
        return False
    # Without a backslash every '"' delimits a string, so the even pieces of a split are what lies outside them:
    # in C, where the string-skipping regex stepped through every character (30 us of 37 for an order document).
    outside = "".join(text.split('"')[::2]) if "\\" not in text else _STRINGS.sub("", text)
    return not _NUMBER_TO_CHECK.search(outside)


def dumps(value: Any) -> bytes:
    """The RFC 8785 bytes of a JSON value."""
    try:
        text = _ENCODE(value)
    except (TypeError, ValueError):
        return rfc8785.dumps(value)  # the library names what JSON has no form for
    # No key that sorts differently in UTF-16, no number whose ES6 form may differ from Python's.
    if _plain(text):
        try:
            return text.encode()
        except UnicodeEncodeError:  # a lone surrogate: the library says what to do with it
            pass
    return rfc8785.dumps(value)
