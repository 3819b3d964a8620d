"""X25519 keys from raw bytes, without importing cryptography's OpenSSL backend object.

``X25519PrivateKey.from_private_bytes``, ``.generate`` and ``X25519PublicKey.from_public_bytes``
each import ``cryptography.hazmat.backends.openssl.backend`` (and with it the EC, RSA, padding
and cipher modules) only to ask whether X25519 is supported, which every OpenSSL that
cryptography builds against answers yes. ``keygen``, ``seal`` and ``open`` are start-up bound
(issue 14 item 15), so they call the functions those methods end in: cryptography's own Rust
binding, the same objects. When a cryptography release moves them, the public methods are used.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

__all__ = ["generate_private", "private_from_bytes", "public_from_bytes"]

generate_private: Callable[[], X25519PrivateKey] = X25519PrivateKey.generate
private_from_bytes: Callable[[bytes], X25519PrivateKey] = X25519PrivateKey.from_private_bytes
public_from_bytes: Callable[[bytes], X25519PublicKey] = X25519PublicKey.from_public_bytes

try:
    from cryptography.hazmat.bindings._rust import openssl as _rust_openssl

    generate_private = _rust_openssl.x25519.generate_key
    private_from_bytes = _rust_openssl.x25519.from_private_bytes
    public_from_bytes = _rust_openssl.x25519.from_public_bytes
except (ImportError, AttributeError):  # pragma: no cover - another cryptography layout
    pass
