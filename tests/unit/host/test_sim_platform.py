"""The simulated SGX platform (PKI, collateral, DCAP v3 quotes) and its ``/dev/attestation``.

Quotes are checked twice: field by field against DCAP v3 and the design's promises (a QE vendor
id that is not Intel's, the QE report binding the attestation key, certification data type 5,
the PCK extension with the simulated FMSPC), and whole, by the real verifier.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from golem_graphene.attestation.anchors import SIMULATION_MARKER_OID, TrustAnchor
from golem_graphene.attestation.pck import PckExtension
from golem_graphene.attestation.quote import INTEL_QE_VENDOR_ID, CertificationDataType, Quote
from golem_graphene.attestation.verifier import QuoteVerifier, VerifyOptions
from golem_graphene.errors import RunnerError, UntrustedRootError, VerificationError
from golem_graphene.host.sim.attestation_device import AttestationDevice
from golem_graphene.host.sim.platform import (
    SIM_FMSPC,
    SIM_QE_VENDOR_ID,
    EnclaveIdentity,
    SimPlatform,
)

KEY_NAMES = ("root", "pck-ca", "pck", "tcb-signing", "attestation")
IDENTITY = EnclaveIdentity(
    mrenclave=hashlib.sha256(b"enclave").digest(),
    mrsigner=hashlib.sha256(b"signer").digest(),
    isvprodid=7,
    isvsvn=3,
)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("provider-data")


@pytest.fixture(scope="module")
def platform(data_dir: Path) -> SimPlatform:
    return SimPlatform.load_or_create(data_dir)


def verifier_for(platform: SimPlatform) -> QuoteVerifier:
    return QuoteVerifier(
        anchor=platform.trust_anchor(),
        options=VerifyOptions(trusted_simulation_roots=frozenset({platform.root_fingerprint})),
    )


# --- the platform's files -------------------------------------------------------------------


def test_private_keys_are_stored_0600_in_a_0700_folder(platform: SimPlatform) -> None:
    assert stat.S_IMODE(platform.directory.stat().st_mode) == 0o700
    for name in KEY_NAMES:
        mode = stat.S_IMODE((platform.directory / f"{name}.key").stat().st_mode)
        assert mode == 0o600, name
    # Certificates are public and readable.
    assert stat.S_IMODE(platform.root_path.stat().st_mode) == 0o644
    assert not list(platform.directory.glob(".*.tmp")), "temporary files left behind"


def test_root_fingerprint_is_stable_across_loads(platform: SimPlatform, data_dir: Path) -> None:
    again = SimPlatform.load_or_create(data_dir)
    assert again.root_fingerprint == platform.root_fingerprint
    meta = json.loads((platform.directory / "platform.json").read_text())
    assert meta["root_fingerprint"] == platform.root_fingerprint
    assert meta["fmspc"] == SIM_FMSPC.hex().upper()
    assert platform.root_path.read_bytes() == platform.root_pem
    # The reloaded platform signs with the same keys: its quotes verify under the first anchor.
    now = datetime.now(UTC)
    verified = verifier_for(platform).verify(
        again.quote(IDENTITY, b"x"), again.collateral(now), now
    )
    assert verified.simulated


def test_each_data_directory_has_its_own_root(platform: SimPlatform, tmp_path: Path) -> None:
    other = SimPlatform.load_or_create(tmp_path)
    assert other.root_fingerprint != platform.root_fingerprint
    now = datetime.now(UTC)
    with pytest.raises(UntrustedRootError):
        verifier_for(platform).verify(other.quote(IDENTITY, b""), other.collateral(now), now)


def test_root_is_marked_as_a_simulation(platform: SimPlatform) -> None:
    anchor = TrustAnchor.from_pem(platform.root_pem)
    assert anchor.simulated
    marker = x509.ObjectIdentifier(SIMULATION_MARKER_OID)
    assert platform.root_certificate.extensions.get_extension_for_oid(marker)
    assert "NOT Intel" in platform.root_certificate.subject.rfc4514_string()


@pytest.mark.parametrize("damage", ["platform.json", "pck.key"])
def test_an_unreadable_platform_is_a_runner_error(tmp_path: Path, damage: str) -> None:
    created = SimPlatform.load_or_create(tmp_path)
    target = created.directory / damage
    if damage.endswith(".json"):
        target.write_text("{not json")
    else:
        target.unlink()
    with pytest.raises(RunnerError, match="unreadable"):
        SimPlatform.load_or_create(tmp_path)


# --- collateral ------------------------------------------------------------------------------


def test_collateral_is_cached_within_its_window_and_refreshed_after(tmp_path: Path) -> None:
    platform = SimPlatform.load_or_create(tmp_path)
    t0 = datetime.now(UTC)
    first = platform.collateral(t0)
    assert platform.collateral(t0 + timedelta(days=1)) is first
    late = t0 + timedelta(days=29, hours=12)
    refreshed = platform.collateral(late)
    assert refreshed is not first
    issued = json.loads(refreshed.tcb_info)["issueDate"]
    assert issued.startswith(late.strftime("%Y-%m-%d"))
    quote = platform.quote(IDENTITY, b"")
    verifier = verifier_for(platform)
    # The fresh collateral verifies long after the first would have expired.
    after_first_expired = t0 + timedelta(days=31)
    assert verifier.verify(quote, platform.collateral(after_first_expired), after_first_expired)
    with pytest.raises(VerificationError, match="expired"):
        verifier_for(platform).verify(quote, first, after_first_expired)


def test_collateral_for_a_time_before_the_cached_issue_is_reissued(tmp_path: Path) -> None:
    platform = SimPlatform.load_or_create(tmp_path)
    now = datetime.now(UTC)
    current = platform.collateral(now)
    earlier = now - timedelta(hours=2)
    reissued = platform.collateral(earlier)
    assert reissued is not current
    assert verifier_for(platform).verify(platform.quote(IDENTITY, b""), reissued, earlier)


# --- quotes ----------------------------------------------------------------------------------


def test_quote_fields(platform: SimPlatform) -> None:
    quote = Quote.from_bytes(platform.quote(IDENTITY, b"report-data"))
    header = quote.header
    assert (header.version, header.att_key_type, header.tee_type) == (3, 2, 0)
    assert header.qe_vendor_id == SIM_QE_VENDOR_ID
    assert header.qe_vendor_id != INTEL_QE_VENDOR_ID
    assert not header.is_intel_qe

    body = quote.report_body
    assert body.mrenclave == IDENTITY.mrenclave
    assert body.mrsigner == IDENTITY.mrsigner
    assert (body.isvprodid, body.isvsvn) == (7, 3)
    assert body.report_data == b"report-data".ljust(64, b"\0")
    assert body.attribute_flags == 0x5  # INIT | MODE64BIT, production
    assert not body.debug

    # The QE report binds the attestation key: SHA-256(key || QE auth data), zero-padded.
    expected = hashlib.sha256(quote.attestation_key + quote.qe_auth_data).digest()
    assert quote.qe_report_body.report_data == expected + bytes(32)

    assert quote.certification_data_type == CertificationDataType.PCK_CERT_CHAIN == 5
    chain = x509.load_pem_x509_certificates(quote.pck_chain_pem())
    assert len(chain) == 3
    assert PckExtension.from_certificate(chain[0]).fmspc == SIM_FMSPC
    assert chain[2] == platform.root_certificate


def test_debug_enclaves_carry_the_debug_attribute(platform: SimPlatform) -> None:
    debug = EnclaveIdentity(IDENTITY.mrenclave, IDENTITY.mrsigner, debug=True)
    body = Quote.from_bytes(platform.quote(debug, b"")).report_body
    assert body.attribute_flags == 0x7
    assert body.debug


def test_quotes_verify_with_the_real_verifier_only_when_trusted(platform: SimPlatform) -> None:
    now = datetime.now(UTC)
    raw = platform.quote(IDENTITY, bytes(range(64)))
    collateral = platform.collateral(now)
    verified = verifier_for(platform).verify(raw, collateral, now)
    assert verified.simulated
    assert verified.fmspc == SIM_FMSPC
    assert verified.report_body.report_data == bytes(range(64))
    assert verified.status.value == "UpToDate"
    untrusting = QuoteVerifier(anchor=platform.trust_anchor())
    with pytest.raises(UntrustedRootError):
        untrusting.verify(raw, collateral, now)
    with pytest.raises(UntrustedRootError):
        QuoteVerifier().verify(raw, collateral, now)  # the pinned Intel root


def test_report_data_longer_than_64_bytes_is_refused(platform: SimPlatform) -> None:
    with pytest.raises(RunnerError, match="at most 64 bytes"):
        platform.quote(IDENTITY, bytes(65))


def test_each_quote_is_freshly_signed(platform: SimPlatform) -> None:
    one, two = platform.quote(IDENTITY, b"a"), platform.quote(IDENTITY, b"a")
    assert one[:432] == two[:432]
    assert one[436:500] != two[436:500]  # ECDSA signatures are randomised


# --- /dev/attestation ------------------------------------------------------------------------


def _with_timeout(action: object, seconds: float = 5.0) -> bytes:
    """Run a blocking FIFO action in a thread, failing (not hanging) if it does not finish."""
    result: list[bytes] = []
    thread = threading.Thread(target=lambda: result.append(action()), daemon=True)  # type: ignore[operator]
    thread.start()
    thread.join(seconds)
    assert result, "the /dev/attestation action did not complete"
    return result[0]


def write_report_data(device_dir: Path, data: bytes) -> None:
    fd = os.open(device_dir / "user_report_data", os.O_WRONLY)
    try:
        os.write(fd, data)  # one write(), as Gramine requires
    finally:
        os.close(fd)


def read_quote(device_dir: Path) -> bytes:
    return _with_timeout(lambda: (device_dir / "quote").read_bytes())


@pytest.fixture
def served() -> list[bytes]:
    return []


@pytest.fixture
def device(tmp_path: Path, served: list[bytes]) -> Iterator[AttestationDevice]:
    def make_quote(report_data: bytes) -> bytes:
        served.append(report_data)
        return b"QUOTE:" + report_data

    with AttestationDevice(tmp_path / "dev", make_quote, key_names=("default", "mine")) as dev:
        yield dev


def test_device_files_have_gramines_names_and_modes(device: AttestationDevice) -> None:
    d = device.directory
    assert (d / "attestation_type").read_text() == "dcap"
    assert stat.S_IMODE((d / "attestation_type").stat().st_mode) == 0o444
    assert stat.S_ISFIFO((d / "user_report_data").stat().st_mode)
    assert stat.S_ISFIFO((d / "quote").stat().st_mode)
    assert sorted(p.name for p in (d / "keys").iterdir()) == ["default", "mine"]


def test_quote_covers_the_report_data_written_before(
    device: AttestationDevice, served: list[bytes]
) -> None:
    write_report_data(device.directory, b"hello")
    assert read_quote(device.directory) == b"QUOTE:" + b"hello".ljust(64, b"\0")
    assert served == [b"hello".ljust(64, b"\0")]
    assert device.quotes_served == 1


def test_each_write_replaces_the_report_data(device: AttestationDevice) -> None:
    write_report_data(device.directory, b"x" * 64)
    assert read_quote(device.directory).endswith(b"x" * 64)
    write_report_data(device.directory, b"yy")  # shorter: zero-padded, nothing left over
    assert read_quote(device.directory) == b"QUOTE:yy" + bytes(62)
    write_report_data(device.directory, bytes(range(100)))  # longer: truncated to 64
    assert read_quote(device.directory) == b"QUOTE:" + bytes(range(64))
    assert device.quotes_served == 3


def test_every_open_of_quote_gets_a_fresh_quote(
    device: AttestationDevice, served: list[bytes]
) -> None:
    # Gramine generates the quote at open(): reading twice without new report data gives two.
    write_report_data(device.directory, b"again")
    first = read_quote(device.directory)
    second = read_quote(device.directory)
    assert first == second == b"QUOTE:" + b"again".ljust(64, b"\0")
    assert len(served) == 2


def test_a_slow_reader_gets_exactly_one_quote(
    device: AttestationDevice, served: list[bytes]
) -> None:
    # A reader pausing longer than the device's poll between reads still has the FIFO open;
    # it must neither get a second quote appended nor starve the next reader.
    write_report_data(device.directory, b"slow")

    def read_slowly() -> bytes:
        fd = os.open(device.directory / "quote", os.O_RDONLY)
        data = b""
        try:
            while chunk := os.read(fd, 16):
                data += chunk
                time.sleep(0.01)
        finally:
            os.close(fd)
        return data

    assert _with_timeout(read_slowly) == b"QUOTE:" + b"slow".ljust(64, b"\0")
    assert read_quote(device.directory) == b"QUOTE:" + b"slow".ljust(64, b"\0")
    assert len(served) == 2
    assert sorted(p.name for p in device.directory.iterdir()) == [
        "attestation_type",
        "keys",
        "quote",
        "user_report_data",
    ]


def test_without_remote_attestation_there_is_no_quote(tmp_path: Path) -> None:
    with AttestationDevice(tmp_path / "dev", None) as dev:
        assert not dev.remote_attestation
        assert (dev.directory / "attestation_type").read_text() == "none"
        assert not (dev.directory / "quote").exists()
        write_report_data(dev.directory, b"ignored")  # still accepted, as in Gramine
        assert dev.error is None


@pytest.mark.parametrize("name", ["", ".", "..", "a/b"])
def test_invalid_key_names_are_refused(tmp_path: Path, name: str) -> None:
    device = AttestationDevice(tmp_path / "dev", None, key_names=[name])
    with pytest.raises(RunnerError, match="key name"):
        device.start()


def test_stop_is_idempotent_and_ends_the_thread(tmp_path: Path) -> None:
    device = AttestationDevice(tmp_path / "dev", lambda rd: rd)
    device.start()
    thread = device._thread
    assert thread is not None and thread.is_alive()
    device.stop()
    device.stop()
    assert not thread.is_alive()
