"""The verifier's collateral cache: reuse verified chains and collateral, never a verdict.

A warm cache skips re-verifying the PCK chain, CRLs, TCB info and QE identity, but every quote's
own signatures (QE report, ISV report) are still checked, and a time outside the window in which
the cached checks hold verifies everything again and fails with the precise reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from _sgx_test_pki import T0, SgxCase, SgxTestPki, build_quote, pem

from golem_graphene.attestation import (
    CollateralCache,
    QuoteCollateral,
    QuoteVerifier,
    TrustAnchor,
    VerifyOptions,
)
from golem_graphene.errors import VerificationError

T = datetime.fromtimestamp(1752919277, UTC)  # phala_sgx


@dataclass
class Calls:
    pck: int = 0
    collateral: int = 0


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[Calls]:
    """Count the expensive (cacheable) verification steps."""
    counts = Calls()
    pck = QuoteVerifier._verify_pck_chain
    coll = QuoteVerifier._verify_collateral

    def spy_pck(self: QuoteVerifier, *args: Any) -> Any:
        counts.pck += 1
        return pck(self, *args)

    def spy_coll(self: QuoteVerifier, *args: Any) -> Any:
        counts.collateral += 1
        return coll(self, *args)

    monkeypatch.setattr(QuoteVerifier, "_verify_pck_chain", spy_pck)
    monkeypatch.setattr(QuoteVerifier, "_verify_collateral", spy_coll)
    yield counts


@dataclass(frozen=True)
class Phala:
    quote: bytes
    collateral: QuoteCollateral
    anchor: TrustAnchor


@pytest.fixture(scope="module")
def phala(vectors: Path) -> Phala:
    pack = vectors / "dcap" / "phala_sgx"
    return Phala(
        quote=(pack / "quote.bin").read_bytes(),
        collateral=QuoteCollateral.from_json((pack / "collateral.json").read_text()),
        anchor=TrustAnchor.from_pem((pack / "root.pem").read_bytes()),
    )


def _flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1 :]


def test_second_verification_hits_the_cache(phala: Phala, calls: Calls) -> None:
    verifier = QuoteVerifier(anchor=phala.anchor)
    first = verifier.verify(phala.quote, phala.collateral, T)
    assert (calls.pck, calls.collateral) == (1, 1)
    assert len(verifier.cache) == 2  # one PCK chain verdict, one collateral verdict
    second = verifier.verify(phala.quote, phala.collateral, T + timedelta(seconds=1))
    assert (calls.pck, calls.collateral) == (1, 1)
    assert second.status == first.status
    assert second.advisory_ids == first.advisory_ids
    assert second.collateral_window == first.collateral_window
    assert second.verified_at == T + timedelta(seconds=1)


def test_equal_collateral_parsed_again_hits_the_cache(phala: Phala, calls: Calls) -> None:
    verifier = QuoteVerifier(anchor=phala.anchor)
    verifier.verify(phala.quote, phala.collateral, T)
    again = QuoteCollateral.from_json(phala.collateral.to_json())
    verifier.verify(phala.quote, again, T)
    assert (calls.pck, calls.collateral) == (1, 1)


@pytest.mark.parametrize(
    ("offset", "code"),
    [
        (200, "quote_signature"),  # ISV report body
        (440, "quote_signature"),  # ISV signature
        (700, "qe_report_signature"),  # QE report
        (960, "qe_report_signature"),  # QE report signature
        (520, "qe_report_data"),  # attestation key
        (1020, "qe_report_data"),  # QE auth data
    ],
)
def test_warm_cache_still_checks_each_quote(
    phala: Phala, calls: Calls, offset: int, code: str
) -> None:
    verifier = QuoteVerifier(anchor=phala.anchor)
    verifier.verify(phala.quote, phala.collateral, T)
    with pytest.raises(VerificationError) as info:
        verifier.verify(_flip(phala.quote, offset), phala.collateral, T)
    assert info.value.code == code
    assert (calls.pck, calls.collateral) == (1, 1)  # the failure came from the per-quote checks
    verifier.verify(phala.quote, phala.collateral, T)  # and the cache is not poisoned


@pytest.mark.parametrize(
    ("at", "code", "words"),
    [
        (datetime(2025, 7, 19, 10, 1, 19, tzinfo=UTC), "qe_identity_expired", "QE identity"),
        (datetime(2025, 6, 19, 10, 56, 10, tzinfo=UTC), "tcb_info_not_yet_valid", "TCB info"),
        (datetime(2025, 7, 19, 10, 23, 19, tzinfo=UTC), "crl", "PCK CRL has expired"),
    ],
)
def test_time_outside_the_cached_window_verifies_again(
    phala: Phala, calls: Calls, at: datetime, code: str, words: str
) -> None:
    verifier = QuoteVerifier(anchor=phala.anchor)
    verifier.verify(phala.quote, phala.collateral, T)
    with pytest.raises(VerificationError) as info:
        verifier.verify(phala.quote, phala.collateral, at)
    assert info.value.code == code
    assert words in info.value.message
    assert calls.pck + calls.collateral > 2  # something was verified again


def test_window_edges_are_served_from_the_cache(phala: Phala, calls: Calls) -> None:
    verifier = QuoteVerifier(anchor=phala.anchor)
    result = verifier.verify(phala.quote, phala.collateral, T)
    lo, hi = result.collateral_window
    verifier.verify(phala.quote, phala.collateral, lo)
    verifier.verify(phala.quote, phala.collateral, hi)
    assert (calls.pck, calls.collateral) == (1, 1)


def test_failures_are_not_cached(phala: Phala, calls: Calls) -> None:
    verifier = QuoteVerifier(anchor=phala.anchor)
    late = datetime(2025, 7, 19, 10, 1, 19, tzinfo=UTC)
    for _ in range(2):
        with pytest.raises(VerificationError):
            verifier.verify(phala.quote, phala.collateral, late)
    assert calls.collateral == 2
    assert len(verifier.cache) == 1  # only the (valid) PCK chain verdict


def test_changed_collateral_misses_the_cache(phala: Phala, calls: Calls) -> None:
    verifier = QuoteVerifier(anchor=phala.anchor)
    verifier.verify(phala.quote, phala.collateral, T)
    doc = json.loads(phala.collateral.to_json())
    sig = doc["tcb_info_signature"]
    doc["tcb_info_signature"] = ("1" if sig[0] == "0" else "0") + sig[1:]
    with pytest.raises(VerificationError) as info:
        verifier.verify(phala.quote, QuoteCollateral.from_mapping(doc), T)
    assert info.value.code == "tcb_info_signature"
    assert calls.collateral == 2


def test_shared_cache_does_not_mix_anchors(phala: Phala, vectors: Path) -> None:
    cache = CollateralCache()
    QuoteVerifier(anchor=phala.anchor, cache=cache).verify(phala.quote, phala.collateral, T)
    test_root = vectors / "dcap" / "intel_qvl_sample_TEST_PKI" / "root.pem"
    other = QuoteVerifier(anchor=TrustAnchor.from_pem(test_root.read_bytes()), cache=cache)
    with pytest.raises(VerificationError) as info:
        other.verify(phala.quote, phala.collateral, T)
    assert info.value.code == "untrusted_root"


def test_shared_cache_does_not_mix_crl_waivers(vectors: Path) -> None:
    pack = vectors / "dcap" / "oasis_sgx"
    quote = (pack / "quote.bin").read_bytes()
    collateral = QuoteCollateral.from_json((pack / "collateral.json").read_text())
    anchor = TrustAnchor.from_pem((pack / "root.pem").read_bytes())
    at = datetime.fromtimestamp(1671497404, UTC)
    cache = CollateralCache()
    lax = VerifyOptions(allow_missing_crls=frozenset({"root_ca_crl", "pck_crl"}))
    QuoteVerifier(anchor=anchor, options=lax, cache=cache).verify(quote, collateral, at)
    with pytest.raises(VerificationError) as info:
        QuoteVerifier(anchor=anchor, cache=cache).verify(quote, collateral, at)
    assert info.value.code == "crl_missing"


def test_many_quotes_of_one_platform_share_the_verdicts(calls: Calls) -> None:
    # Each quote has its own attestation key and signatures; the platform (PCK chain) and the
    # collateral are shared, so they are verified once.
    pki = SgxTestPki()
    first = SgxCase(pki)
    verifier = QuoteVerifier(anchor=pki.anchor())
    collateral = first.collateral()
    chain = pem(first.leaf, pki.pck_ca, pki.root).encode() + b"\0"
    quotes = [build_quote(first.leaf_key, chain) for _ in range(5)]
    assert len(set(quotes)) == 5
    for quote in quotes:
        assert verifier.verify(quote, collateral, T0).status.value == "UpToDate"
    assert (calls.pck, calls.collateral) == (1, 1)
    # A quote from another platform (another PCK leaf) verifies its own chain.
    verifier.verify(SgxCase(pki).quote, collateral, T0)
    assert (calls.pck, calls.collateral) == (2, 1)


def test_cache_is_bounded_and_evicts_least_recently_used() -> None:
    cache = CollateralCache(max_entries=2)
    window = (T, T + timedelta(days=1))
    cache.put("a", window, 1)
    cache.put("b", window, 2)
    assert cache.get("a", T) == 1  # a is now the most recently used
    cache.put("c", window, 3)
    assert len(cache) == 2
    assert cache.get("b", T) is None
    assert (cache.get("a", T), cache.get("c", T)) == (1, 3)


def test_cache_entry_only_inside_its_window() -> None:
    cache = CollateralCache()
    cache.put("k", (T, T + timedelta(days=1)), "v")
    assert cache.get("k", T) == "v"
    assert cache.get("k", T + timedelta(days=1)) == "v"
    assert cache.get("k", T - timedelta(seconds=1)) is None
    assert cache.get("k", T + timedelta(days=1, seconds=1)) is None
    assert cache.get("missing", T) is None
