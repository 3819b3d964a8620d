"""SGX SIGSTRUCT (the ``.sig`` file ``gramine-sgx-sign`` writes): the fields a verifier expects.

Layout (1808 bytes, little-endian; Gramine ``sgx_arch.h`` ``sgx_sigstruct_t``): modulus at 128
(384 bytes; MRSIGNER = SHA-256 of these bytes), attributes at 928, enclave hash (MRENCLAVE) at
960, ISVPRODID at 1024, ISVSVN at 1026.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from golem_graphene.errors import RunnerError

__all__ = ["SIGSTRUCT_SIZE", "Sigstruct"]

SIGSTRUCT_SIZE = 1808
_HEADER = bytes.fromhex("06000000e10000000000010000000000")
_HEADER2 = bytes.fromhex("01010000600000006000000001000000")


@dataclass(frozen=True)
class Sigstruct:
    """The measured identity an enclave signature commits to."""

    mrenclave: bytes
    mrsigner: bytes
    isvprodid: int
    isvsvn: int
    attribute_flags: int
    attribute_xfrm: int
    date: str

    @property
    def debug(self) -> bool:
        """True when the signature allows only a debug enclave."""
        return bool(self.attribute_flags & 0x2)

    @classmethod
    def from_bytes(cls, data: bytes) -> Sigstruct:
        """Parse a ``.sig`` file; raises :class:`RunnerError` when it is not a SIGSTRUCT."""
        if len(data) != SIGSTRUCT_SIZE:
            raise RunnerError(
                "not an SGX SIGSTRUCT (wrong size)", expected=SIGSTRUCT_SIZE, found=len(data)
            )
        if data[0:16] != _HEADER or data[24:40] != _HEADER2:
            raise RunnerError("not an SGX SIGSTRUCT (bad header)")
        # Gramine (graminelibos/sigstruct.py) writes year u16 @20, month @22, day @23 as plain
        # integers, not the SDM's BCD yyyymmdd; the date is informational (EINIT ignores it).
        year, month, day = struct.unpack_from("<HBB", data, 20)
        flags, xfrm = struct.unpack_from("<QQ", data, 928)
        isvprodid, isvsvn = struct.unpack_from("<HH", data, 1024)
        return cls(
            mrenclave=data[960:992],
            mrsigner=hashlib.sha256(data[128:512]).digest(),
            isvprodid=isvprodid,
            isvsvn=isvsvn,
            attribute_flags=flags,
            attribute_xfrm=xfrm,
            date=f"{year:04d}-{month:02d}-{day:02d}",
        )
