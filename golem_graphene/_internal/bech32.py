"""Bech32 (BIP 173) as age uses it: no length limit, one case per string, checksum over lowercase.

age encodes X25519 recipients (``age1...``) and identities (``AGE-SECRET-KEY-1...``) this way. The
functions here only check the encoding; what a human-readable part means is the caller's business.
"""

from __future__ import annotations

from golem_graphene.errors import AgeFormatError

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_CHARSET_REV = {c: i for i, c in enumerate(_CHARSET)}
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
_CHECKSUM_LEN = 6


def _polymod(values: list[int]) -> int:
    chk = 1
    for v in values:
        top = chk >> 25
        chk = ((chk & 0x1FFFFFF) << 5) ^ v
        for i, g in enumerate(_GENERATOR):
            if (top >> i) & 1:
                chk ^= g
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: bytes | list[int], from_bits: int, to_bits: int, *, pad: bool) -> list[int]:
    acc = 0
    bits = 0
    out: list[int] = []
    max_value = (1 << to_bits) - 1
    for value in data:
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & max_value)
    if pad:
        if bits:
            out.append((acc << (to_bits - bits)) & max_value)
    elif bits >= from_bits or (acc << (to_bits - bits)) & max_value:
        # Decoding: leftover bits must be fewer than one input group and all zero, otherwise two
        # strings would decode to the same bytes.
        raise AgeFormatError("bech32 data has invalid padding")
    return out


def encode(hrp: str, data: bytes) -> str:
    """Encode ``data`` under the human-readable part ``hrp``; the result has the case of ``hrp``.

    Raises AgeFormatError if ``hrp`` mixes cases or holds characters outside ASCII 33..126.
    """
    if not hrp or any(not 33 <= ord(c) <= 126 for c in hrp):
        raise AgeFormatError("bech32 human-readable part has invalid characters")
    if hrp.lower() != hrp and hrp.upper() != hrp:
        raise AgeFormatError("bech32 human-readable part mixes upper and lower case")
    lower = hrp.lower()
    values = _convert_bits(data, 8, 5, pad=True)
    polymod = _polymod([*_hrp_expand(lower), *values, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(_CHECKSUM_LEN)]
    text = lower + "1" + "".join(_CHARSET[v] for v in values + checksum)
    return text.upper() if hrp.isupper() else text


def decode(text: str) -> tuple[str, bytes]:
    """Split a bech32 string into its human-readable part (lowercased) and its data bytes.

    Raises AgeFormatError on mixed case, characters outside the alphabet, a bad checksum or bad
    padding, so that a mistyped key is refused instead of being read as another key.
    """
    if any(not 33 <= ord(c) <= 126 for c in text):
        raise AgeFormatError("bech32 string has characters outside printable ASCII")
    if text.lower() != text and text.upper() != text:
        raise AgeFormatError("bech32 string mixes upper and lower case")
    lower = text.lower()
    pos = lower.rfind("1")
    if pos < 1 or pos + 1 + _CHECKSUM_LEN > len(lower):
        raise AgeFormatError("bech32 string has no separator or a too short checksum")
    hrp = lower[:pos]
    try:
        values = [_CHARSET_REV[c] for c in lower[pos + 1 :]]
    except KeyError as exc:
        raise AgeFormatError(f"bech32 data has a character outside the alphabet: {exc}") from None
    if _polymod([*_hrp_expand(hrp), *values]) != 1:
        raise AgeFormatError("bech32 checksum does not match (mistyped or truncated key?)")
    data = _convert_bits(values[:-_CHECKSUM_LEN], 5, 8, pad=False)
    return hrp, bytes(data)
