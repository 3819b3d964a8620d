"""The X25519 constructors ``keygen``, ``seal`` and ``open`` use (cryptography's binding, which
skips importing its OpenSSL backend object) agree with cryptography's public API."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from golem_graphene.sealing._internal import x25519


def _raw(key: X25519PrivateKey | X25519PublicKey) -> bytes:
    if isinstance(key, X25519PrivateKey):
        return key.private_bytes_raw()
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def test_same_keys_and_shared_secrets_as_the_public_api() -> None:
    for _ in range(20):
        raw, peer = os.urandom(32), X25519PrivateKey.generate()
        ours = x25519.private_from_bytes(raw)
        theirs = X25519PrivateKey.from_private_bytes(raw)
        assert isinstance(ours, X25519PrivateKey)
        assert _raw(ours.public_key()) == _raw(theirs.public_key())
        peer_public = x25519.public_from_bytes(_raw(peer.public_key()))
        assert isinstance(peer_public, X25519PublicKey)
        assert ours.exchange(peer_public) == theirs.exchange(peer.public_key())
    fresh = x25519.generate_private()
    assert isinstance(fresh, X25519PrivateKey) and len(_raw(fresh)) == 32
    assert _raw(fresh) != _raw(x25519.generate_private())


@pytest.mark.parametrize("size", [0, 31, 33])
def test_wrong_sizes_are_refused_as_by_the_public_api(size: int) -> None:
    with pytest.raises(ValueError):
        X25519PrivateKey.from_private_bytes(bytes(size))
    with pytest.raises(ValueError):
        x25519.private_from_bytes(bytes(size))
    with pytest.raises(ValueError):
        x25519.public_from_bytes(bytes(size))
