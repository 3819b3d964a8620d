"""X25519 identities and recipients, and identity/recipient files, in age's encodings."""

from __future__ import annotations

from pathlib import Path

import pytest

from golem_graphene._internal import bech32
from golem_graphene.errors import AgeFormatError, UnsupportedRecipientError, UsageError
from golem_graphene.limits import MAX_AGE_KEY_FILE_BYTES
from golem_graphene.sealing import (
    X25519Identity,
    X25519Recipient,
    load_identities,
    load_recipients,
    parse_identities,
    parse_recipients,
)

# The example key pair of the C2SP age spec (identity = 32 bytes of 0x42).
SPEC_IDENTITY = "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX"
SPEC_RECIPIENT = "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj"
PQ_IDENTITY = "AGE-SECRET-KEY-PQ-1HZLGZUPT4ETPKDEV8HSGFDCYZ4E522W0A7PU2LHT8EH9W6YLNC3SW78XKG"


class TestIdentity:
    def test_spec_example(self) -> None:
        identity = X25519Identity.from_string(SPEC_IDENTITY)
        assert identity.private_bytes() == b"\x42" * 32
        assert identity.to_string() == SPEC_IDENTITY
        assert identity.recipient().to_string() == SPEC_RECIPIENT

    def test_generate_is_random_and_round_trips(self) -> None:
        a, b = X25519Identity.generate(), X25519Identity.generate()
        assert a != b
        assert X25519Identity.from_string(a.to_string()) == a
        assert X25519Identity.from_private_bytes(a.private_bytes()) == a
        assert hash(X25519Identity.from_string(a.to_string())) == hash(a)

    def test_lowercase_and_surrounding_whitespace_are_accepted(self) -> None:
        identity = X25519Identity.from_string(f"  {SPEC_IDENTITY.lower()}\n")
        assert identity.to_string() == SPEC_IDENTITY

    def test_repr_does_not_leak_the_key(self) -> None:
        identity = X25519Identity.from_string(SPEC_IDENTITY)
        assert SPEC_IDENTITY not in repr(identity)
        assert "4242" not in repr(identity)
        assert SPEC_RECIPIENT in repr(identity)

    def test_frozen(self) -> None:
        identity = X25519Identity.generate()
        with pytest.raises(AttributeError):
            identity._raw = b"\x00" * 32  # type: ignore[misc]

    @pytest.mark.parametrize(
        "text",
        [
            SPEC_RECIPIENT,  # a recipient is not an identity
            SPEC_IDENTITY[:-1] + ("Y" if SPEC_IDENTITY[-1] != "Y" else "Z"),  # checksum
            SPEC_IDENTITY[:20] + SPEC_IDENTITY[20:].lower(),  # mixed case
            bech32.encode("AGE-SECRET-KEY-", b"\x42" * 31),  # short key
            "",
            "AGE-SECRET-KEY-1",
        ],
    )
    def test_malformed(self, text: str) -> None:
        with pytest.raises(AgeFormatError) as info:
            X25519Identity.from_string(text)
        assert SPEC_IDENTITY not in str(info.value)

    @pytest.mark.parametrize(
        "text",
        [
            PQ_IDENTITY,
            "AGE-PLUGIN-YUBIKEY-1QYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQS8E7CMK",
            "-----BEGIN OPENSSH PRIVATE KEY-----",
        ],
    )
    def test_unsupported_kinds(self, text: str) -> None:
        with pytest.raises(UnsupportedRecipientError):
            X25519Identity.from_string(text)

    def test_from_private_bytes_length(self) -> None:
        with pytest.raises(AgeFormatError, match="length"):
            X25519Identity.from_private_bytes(b"\x01" * 33)


class TestRecipient:
    def test_round_trip(self) -> None:
        r = X25519Recipient.from_string(SPEC_RECIPIENT)
        assert r.to_string() == SPEC_RECIPIENT == str(r)
        assert X25519Recipient.from_public_bytes(r.public_bytes()) == r
        assert len({r, X25519Recipient.from_string(SPEC_RECIPIENT)}) == 1
        assert SPEC_RECIPIENT in repr(r)

    @pytest.mark.parametrize(
        "text",
        [
            "age1pq1" + "q" * 60,
            "age1tag1qt8lw0ual6avlwmwatk888yqnmdamm7xfd0wak53ut6elz5c4swx2yqdj4e",
            bech32.encode("age1yubikey", b"\x01" * 33),
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN",
            "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ",
        ],
    )
    def test_unsupported_kinds(self, text: str) -> None:
        with pytest.raises(UnsupportedRecipientError):
            X25519Recipient.from_string(text)

    @pytest.mark.parametrize(
        "text",
        [
            SPEC_IDENTITY,
            SPEC_RECIPIENT[:-1] + ("q" if SPEC_RECIPIENT[-1] != "q" else "p"),
            bech32.encode("age", b"\x01" * 31),
            bech32.encode("bc", b"\x01" * 32),
            "not a key",
        ],
    )
    def test_malformed(self, text: str) -> None:
        with pytest.raises(AgeFormatError):
            X25519Recipient.from_string(text)

    def test_from_public_bytes_length(self) -> None:
        with pytest.raises(AgeFormatError):
            X25519Recipient.from_public_bytes(b"\x00" * 31)


class TestIdentityFiles:
    def test_age_keygen_layout_comments_blank_lines_and_several_keys(self) -> None:
        a, b = X25519Identity.generate(), X25519Identity.generate()
        text = (
            "# created: 2024-01-01T00:00:00Z\r\n"
            f"# public key: {a.recipient()}\r\n"
            f"{a.to_string()}\r\n"
            "\n"
            "   \n"
            "# another one\n"
            f"{b.to_string()}"
        )
        assert parse_identities(text) == [a, b]

    def test_bad_line_is_named_without_echoing_it(self) -> None:
        text = f"# ok\n{SPEC_IDENTITY}\nAGE-SECRET-KEY-1NOTAKEY\n"
        with pytest.raises(AgeFormatError, match=r"keys\.txt:3") as info:
            parse_identities(text, source="keys.txt")
        assert "NOTAKEY" not in str(info.value)

    def test_post_quantum_line_is_unsupported(self) -> None:
        with pytest.raises(UnsupportedRecipientError, match=":2: post-quantum"):
            parse_identities(f"{SPEC_IDENTITY}\n{PQ_IDENTITY}\n")

    def test_empty_file(self) -> None:
        with pytest.raises(AgeFormatError, match="no identities"):
            parse_identities("# nothing here\n\n")

    @pytest.mark.parametrize(
        "text",
        ["age-encryption.org/v1\n-> scrypt ...", "-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n"],
    )
    def test_passphrase_protected_identity_file(self, text: str) -> None:
        with pytest.raises(UnsupportedRecipientError, match="age-encrypted"):
            parse_identities(text)

    def test_ssh_private_key_file(self) -> None:
        text = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\n"
        with pytest.raises(UnsupportedRecipientError, match="SSH"):
            parse_identities(text)

    def test_load_from_disk(self, tmp_path: Path) -> None:
        path = tmp_path / "key.txt"
        path.write_text(f"# c\n{SPEC_IDENTITY}\n")
        assert load_identities(path) == [X25519Identity.from_string(SPEC_IDENTITY)]
        assert load_identities(str(path))[0].recipient().to_string() == SPEC_RECIPIENT

    def test_missing_file_is_a_usage_error(self, tmp_path: Path) -> None:
        with pytest.raises(UsageError, match="cannot read identity file"):
            load_identities(tmp_path / "absent.txt")

    def test_too_large_file(self, tmp_path: Path) -> None:
        path = tmp_path / "big.txt"
        path.write_bytes(b"#" * (MAX_AGE_KEY_FILE_BYTES + 1))
        with pytest.raises(AgeFormatError, match="too large"):
            load_identities(path)

    def test_binary_file(self, tmp_path: Path) -> None:
        path = tmp_path / "bin"
        path.write_bytes(b"\xff\xfe\x00garbage")
        with pytest.raises(AgeFormatError, match="UTF-8"):
            load_identities(path)


class TestRecipientFiles:
    def test_comments_and_several_recipients(self, tmp_path: Path) -> None:
        a, b = X25519Identity.generate().recipient(), X25519Identity.generate().recipient()
        path = tmp_path / "recipients.txt"
        path.write_text(f"# team\n{a}\n\n{b}\n")
        assert load_recipients(path) == [a, b]

    def test_unsupported_line(self) -> None:
        with pytest.raises(UnsupportedRecipientError, match=":2: SSH"):
            parse_recipients(f"{SPEC_RECIPIENT}\nssh-ed25519 AAAA\n")

    def test_bad_line(self) -> None:
        with pytest.raises(AgeFormatError, match=":1:"):
            parse_recipients("age1notarecipient\n")

    def test_empty(self) -> None:
        with pytest.raises(AgeFormatError, match="no recipients"):
            parse_recipients("\n# none\n")
