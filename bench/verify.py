"""Verified DCAP quotes per second: golem-graphene (warm collateral cache) against dcap-qvl.

    .venv/bin/python bench/verify.py                  # each side runs >= 2 s, 3 interleaved rounds
    .venv/bin/python bench/verify.py --seconds 5 --rounds 5
    .venv/bin/python bench/verify.py --profile        # cProfile of our warm path, top functions

Like for like: the CRL-complete ``phala_sgx`` pack (real Intel-signed quote and collateral) at its
time T. Both sides get the raw quote bytes and collateral that was parsed once:

* ours, warm: one ``QuoteVerifier`` verifies the same quote again and again. Its cache keeps the
  verified PCK chain and collateral, so each call parses the quote and checks the per-quote
  cryptography for real: the QE report signature (PCK key), the QE report data hash, the QE
  identity match and the ISV quote signature (attestation key), then TCB level selection.
* ours, cold: a new ``QuoteVerifier`` (empty cache) per quote, i.e. the full chain, CRL, TCB
  info and QE identity verification every time -- what dcap-qvl does on every call.
* dcap-qvl: ``verify_with_root_ca(quote, QuoteCollateralV3, root_der, T)``, which has no cache.

Rounds alternate between the implementations and the figures are medians. The target is >= 2x
dcap-qvl's rate with a warm cache; it is printed, not asserted (``--strict`` exits 1 on a miss).
The other packs (no CRLs, or TCB info v2 that dcap-qvl 0.7.0 cannot read) run for ours only.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dcap_qvl
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from golem_graphene.attestation import QuoteCollateral, QuoteVerifier, TrustAnchor, VerifyOptions

DCAP = Path(__file__).resolve().parents[1] / "tests" / "vectors" / "dcap"
RATIO_TARGET = 2.0


@dataclass(frozen=True)
class Pack:
    name: str
    quote: bytes
    collateral_json: str
    collateral: QuoteCollateral
    anchor: TrustAnchor
    root_der: bytes
    at: datetime
    options: VerifyOptions
    status: str

    @classmethod
    def load(cls, name: str) -> Pack:
        folder = DCAP / name
        case = json.loads((folder / "case.json").read_text())
        root_pem = (folder / "root.pem").read_bytes()
        text = (folder / "collateral.json").read_text()
        return cls(
            name=name,
            quote=(folder / "quote.bin").read_bytes(),
            collateral_json=text,
            collateral=QuoteCollateral.from_json(text),
            anchor=TrustAnchor.from_pem(root_pem),
            root_der=x509.load_pem_x509_certificate(root_pem).public_bytes(
                serialization.Encoding.DER
            ),
            at=datetime.fromtimestamp(case["verify_at_epoch"], UTC),
            options=VerifyOptions(allow_missing_crls=frozenset(case.get("missing_collateral", []))),
            status=case["expected"]["status"],
        )


def rate(fn: Callable[[], object], seconds: float) -> tuple[float, int]:
    """Calls per second of ``fn`` over at least ``seconds`` (count calibrated first)."""
    start = time.perf_counter()
    calibration = 0
    while time.perf_counter() - start < 0.2:
        fn()
        calibration += 1
    per_call = (time.perf_counter() - start) / calibration
    n = max(1, int(seconds / per_call * 1.05))
    start = time.perf_counter()
    for _ in range(n):
        fn()
    elapsed = time.perf_counter() - start
    return n / elapsed, n


def ours_warm(pack: Pack) -> Callable[[], object]:
    verifier = QuoteVerifier(anchor=pack.anchor, options=pack.options)
    verifier.verify(pack.quote, pack.collateral, pack.at)  # warm the cache
    return lambda: verifier.verify(pack.quote, pack.collateral, pack.at)


def ours_cold(pack: Pack) -> Callable[[], object]:
    def run() -> object:
        verifier = QuoteVerifier(anchor=pack.anchor, options=pack.options)
        return verifier.verify(pack.quote, pack.collateral, pack.at)

    return run


def dcap_qvl_call(pack: Pack) -> Callable[[], object]:
    collateral = dcap_qvl.QuoteCollateralV3.from_json(pack.collateral_json)
    epoch = int(pack.at.timestamp())
    return lambda: dcap_qvl.verify_with_root_ca(pack.quote, collateral, pack.root_der, epoch)


def check_agreement(pack: Pack) -> None:
    """Both must produce the pack's expected status before anything is timed."""
    mine = QuoteVerifier(anchor=pack.anchor, options=pack.options).verify(
        pack.quote, pack.collateral, pack.at
    )
    theirs = dcap_qvl.verify_with_root_ca(
        pack.quote,
        dcap_qvl.QuoteCollateralV3.from_json(pack.collateral_json),
        pack.root_der,
        int(pack.at.timestamp()),
    )
    got = (mine.status.value, str(theirs.status))
    if got != (pack.status, pack.status):
        raise SystemExit(
            f"{pack.name}: results differ before timing: {got}, expected {pack.status}"
        )


def profile(pack: Pack, seconds: float, top: int) -> None:
    fn = ours_warm(pack)
    profiler = cProfile.Profile()
    deadline = time.perf_counter() + seconds
    profiler.enable()
    while time.perf_counter() < deadline:
        fn()
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    print(out.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum run per side")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--profile", action="store_true", help="cProfile our warm path")
    parser.add_argument("--top", type=int, default=25, help="functions shown by --profile")
    parser.add_argument("--strict", action="store_true", help="exit 1 if the target is missed")
    args = parser.parse_args(argv)

    pack = Pack.load("phala_sgx")
    check_agreement(pack)
    print(f"pack: {pack.name} (CRL-complete, real Intel collateral), T = {pack.at.isoformat()}")
    print(f"python {sys.version.split()[0]}, dcap-qvl {dcap_qvl.__version__}")
    if args.profile:
        profile(pack, args.seconds, args.top)
        return 0

    warm: list[float] = []
    cold: list[float] = []
    theirs: list[float] = []
    for i in range(args.rounds):
        r_warm, n_warm = rate(ours_warm(pack), args.seconds)
        r_theirs, n_theirs = rate(dcap_qvl_call(pack), args.seconds)
        r_cold, n_cold = rate(ours_cold(pack), args.seconds)
        warm.append(r_warm)
        theirs.append(r_theirs)
        cold.append(r_cold)
        print(
            f"round {i + 1}: ours warm {r_warm:8.0f}/s (n={n_warm}), "
            f"dcap-qvl {r_theirs:8.0f}/s (n={n_theirs}), ours cold {r_cold:8.0f}/s (n={n_cold})"
        )
    m_warm, m_theirs, m_cold = (statistics.median(v) for v in (warm, theirs, cold))
    ratio = m_warm / m_theirs
    print()
    print(f"golem-graphene, warm collateral cache : {m_warm:9.0f} verified quotes/s")
    print(f"dcap-qvl verify_with_root_ca          : {m_theirs:9.0f} verified quotes/s")
    print(f"golem-graphene, cold (no cache)       : {m_cold:9.0f} verified quotes/s")
    print(f"ratio ours(warm) / dcap-qvl           : {ratio:9.2f}x")
    print(f"ratio ours(cold) / dcap-qvl           : {m_cold / m_theirs:9.2f}x")
    met = ratio >= RATIO_TARGET
    print(f"target >= {RATIO_TARGET:.0f}x dcap-qvl (warm): {'MET' if met else 'NOT MET'}")

    print()
    print("ours only (dcap-qvl 0.7.0 cannot read these: no CRLs / TCB info v2):")
    for name in ("oasis_sgx", "intel_qvl_sample_TEST_PKI"):
        other = Pack.load(name)
        r_warm, _ = rate(ours_warm(other), args.seconds / 2)
        r_cold, _ = rate(ours_cold(other), args.seconds / 2)
        print(f"  {name:28s} warm {r_warm:8.0f}/s   cold {r_cold:8.0f}/s")
    return 1 if args.strict and not met else 0


if __name__ == "__main__":
    sys.exit(main())
