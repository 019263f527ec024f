"""File names as text that is always valid UTF-8, and back to the exact bytes.

Linux file names are bytes; Python reads the bytes that are not UTF-8 (a
Latin-1 ``é`` from an old shared filesystem) as lone surrogates
(``surrogateescape``), which no UTF-8 file can hold. Every name the
workflow writes (the CSV, the per-image files and their names, the reports)
goes through ``escape``:

- a name that is valid UTF-8 and holds no backslash is written as it is;
- any other name has each backslash doubled and each byte that is not
  UTF-8 written as ``\\xHH`` (two hex digits).

So an escaped name is exactly one that holds a backslash, and ``unescape``
maps it back to the original bytes: ``Caf\\xe9.jpg`` is the 8 bytes
``43 61 66 e9 2e 6a 70 67``. Like git's quoting of paths, this is
unambiguous and leaves ordinary names alone.
"""

import re

_NEEDS_ESCAPE = re.compile("[\\\\\udc80-\udcff]")
_ESCAPED = re.compile(r"\\(\\|x([0-9a-fA-F]{2}))")


def _escape_char(match):
    char = match.group()
    if char == "\\":
        return "\\\\"
    return f"\\x{ord(char) - 0xDC00:02x}"


def escape(name):
    """``name`` (a str from os functions) as valid UTF-8 text, see the module doc."""
    if _NEEDS_ESCAPE.search(name) is None:
        return name
    return _NEEDS_ESCAPE.sub(_escape_char, name)


def unescape(text):
    """The file name ``escape`` made ``text`` from, as bytes."""
    if "\\" not in text:
        return text.encode("utf-8", "surrogateescape")
    out, pos = bytearray(), 0
    for match in _ESCAPED.finditer(text):
        out += text[pos : match.start()].encode("utf-8")
        out += b"\\" if match.group(1) == "\\" else bytes([int(match.group(2), 16)])
        pos = match.end()
    out += text[pos:].encode("utf-8")
    return bytes(out)
