"""The public surface of ``golem_graphene.sealing`` is deliberate: ``__all__`` lists it exactly."""

from __future__ import annotations

from types import ModuleType

import golem_graphene.sealing as sealing
from golem_graphene.sealing import age, keys

AGE_API = {
    "X25519Identity",
    "X25519Recipient",
    "load_identities",
    "load_recipients",
    "parse_identities",
    "parse_recipients",
    "encrypt_stream",
    "decrypt_stream",
    "encrypt_file",
    "decrypt_file",
    "retarget_header",
    "encrypt_async",
    "decrypt_async",
    "AsyncReadable",
    "AsyncWrite",
    "ProgressCallback",
    "SealDigests",
    "max_ciphertext_size",
    "plaintext_size",
}


def test_all_is_exactly_the_public_names() -> None:
    # Manifest and receipt names are imported lazily (module __getattr__), so they count as
    # public once reachable; the eager ones must be bound in the module itself.
    public = {
        name
        for name, value in vars(sealing).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    lazy = {name for name in sealing.__all__ if name not in public}
    assert public | lazy == set(sealing.__all__)
    assert public <= set(sealing.__all__)
    for name in lazy:
        assert getattr(sealing, name) is not None, name


def test_age_api_is_exported() -> None:
    assert set(sealing.__all__) >= AGE_API
    assert set(age.__all__) | set(keys.__all__) == AGE_API


def test_required_signatures() -> None:
    # Other parts code against these exact names and keyword arguments.
    import inspect

    assert list(inspect.signature(age.encrypt_file).parameters) == [
        "src",
        "dst",
        "recipients",
        "overwrite",
        "armor",
        "progress",
        "digests",
    ]
    assert list(inspect.signature(age.decrypt_file).parameters) == [
        "src",
        "dst",
        "identities",
        "overwrite",
        "progress",
    ]
    assert list(inspect.signature(age.retarget_header).parameters) == [
        "src",
        "dst",
        "identity",
        "new_recipients",
    ]
    for name in ("generate", "from_string", "from_private_bytes"):
        assert callable(getattr(keys.X25519Identity, name))
    for name in ("from_string", "from_public_bytes"):
        assert callable(getattr(keys.X25519Recipient, name))
