"""Text we did not write, made safe to show: escaped, bounded, and marked as someone else's.

A provider's words (a failure message, an HTTP error body, an HTTP reason phrase) reach the
requestor's terminal. Printed raw, control sequences in them can move the cursor, erase our
``FAIL`` line and draw a fake ``OK`` verdict, set the window title, or hide text behind
bidirectional overrides. Everything shown from outside goes through :func:`escape`: every
character that is not printable (C0 and C1 controls, DEL, line and paragraph separators,
format characters such as the bidi overrides and zero-width joiners, unassigned and private
code points) becomes a visible ``\\xNN``/``\\uNNNN``/``\\UNNNNNNNN`` escape, so the text stays
on one line and shows exactly what was sent; it is cut to a bound. :func:`provider_says` adds
the mark that says whose words they are.
"""

from __future__ import annotations

from typing import Final

__all__ = ["PROVIDER_TEXT_CHARS", "escape", "provider_says", "quoted"]

PROVIDER_TEXT_CHARS: Final = 300
"""How much of a provider's message is shown (escaped); the rest is counted, not shown."""


def _escaped_char(ch: str) -> str:
    if ch == "\\":
        return "\\\\"
    if ch == '"':
        return '\\"'
    if ch.isprintable():
        return ch
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape(text: str, limit: int = PROVIDER_TEXT_CHARS) -> str:
    """``text`` on one line with every non-printable character escaped, backslashes and double
    quotes too; at most ``limit`` characters of the result, then how many characters of
    ``text`` were left out."""
    out: list[str] = []
    used = 0
    for index, ch in enumerate(text):
        piece = _escaped_char(ch)
        if used + len(piece) > limit:
            out.append(f"... ({len(text) - index} more characters)")
            break
        out.append(piece)
        used += len(piece)
    return "".join(out)


def quoted(text: str, limit: int = PROVIDER_TEXT_CHARS) -> str:
    """:func:`escape` in double quotes: where the foreign text starts and ends is visible."""
    return f'"{escape(text, limit)}"'


def provider_says(text: str, limit: int = PROVIDER_TEXT_CHARS) -> str:
    """The provider's ``text``, escaped, quoted and marked as the provider's (untrusted) words."""
    return f"the provider says (untrusted): {quoted(text, limit)}"
