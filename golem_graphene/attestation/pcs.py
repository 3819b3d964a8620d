"""Fetch DCAP collateral from Intel's PCS or a PCCS (API v4), with an on-disk cache.

For a quote (or an FMSPC and PCK CA kind) :class:`PcsClient` assembles a
:class:`~golem_graphene.attestation.collateral.QuoteCollateral` from four documents::

    GET {api}/tcb?fmspc=<FMSPC>        {"tcbInfo":{...},"signature":"<hex>"}
                                       + header TCB-Info-Issuer-Chain
    GET {api}/qe/identity              {"enclaveIdentity":{...},"signature":"<hex>"}
                                       + header SGX-Enclave-Identity-Issuer-Chain
    GET {api}/pckcrl?ca=<processor|platform>&encoding=der
                                       DER CRL + header SGX-PCK-CRL-Issuer-Chain
    GET {api}/rootcacrl                PCCS only: hex text of the DER root CA CRL;
                                       with Intel's PCS, the root CA's CRL distribution point

where ``{api}`` is ``{base}/sgx/certification/v4``.

Issuer chains are URL-encoded PEM. PCS API v3 and older PCCS releases name the TCB header
``SGX-TCB-Info-Issuer-Chain``; it is accepted too. CRLs may come as DER, PEM or hex text and
are stored as DER. The signed TCB info and QE identity stay the exact text served (see
:mod:`golem_graphene.attestation._internal.pcs_documents`).

Nothing fetched here is trusted: the verifier checks every signature, chain and date. The client
bounds what it downloads (size, time), reports HTTP and format faults precisely, and caches each
document until its own ``nextUpdate``: a cached document is used while ``at <= nextUpdate``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Self, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import structlog

from golem_graphene import __version__
from golem_graphene.attestation._internal import pki
from golem_graphene.attestation._internal.collateral_store import (
    CachedResponse,
    CollateralStore,
    default_cache_dir,
)
from golem_graphene.attestation._internal.pcs_documents import (
    CrlDocument,
    SignedDocument,
    parse_crl_response,
    parse_qe_identity_response,
    parse_tcb_info_response,
)
from golem_graphene.attestation.collateral import QuoteCollateral
from golem_graphene.attestation.pck import PckExtension, pck_ca_kind
from golem_graphene.attestation.quote import Quote
from golem_graphene.errors import (
    CollateralError,
    CollateralFormatError,
    CollateralSourceError,
    UsageError,
)
from golem_graphene.limits import MAX_PCS_RESPONSE_BYTES, PCS_TIMEOUT_S

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "INTEL_PCS_URL",
    "INTEL_ROOT_CA_CRL_URL",
    "PckCaKind",
    "PcsClient",
    "collateral_for_quote",
    "default_cache_dir",
]

_log = structlog.get_logger(__name__)

INTEL_PCS_URL = "https://api.trustedservices.intel.com"
"""Intel's Provisioning Certification Service."""

INTEL_ROOT_CA_CRL_URL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
"""The CRL distribution point of the Intel SGX Root CA (DER), used with Intel's PCS."""

_API_PATH = "/sgx/certification/v4"
_TCB_HEADERS = ("TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain")
_QE_HEADERS = ("SGX-Enclave-Identity-Issuer-Chain",)
_PCK_CRL_HEADERS = ("SGX-PCK-CRL-Issuer-Chain",)
# Diagnostics PCS puts on errors; public identifiers, safe to show.
_DIAGNOSTIC_HEADERS = ("Request-ID", "Error-Code", "Error-Message", "Retry-After")

PckCaKind = Literal["processor", "platform"]

_D = TypeVar("_D", SignedDocument, CrlDocument)


@dataclass(frozen=True, slots=True)
class _Spec:
    """How to fetch, name, parse and describe one collateral document."""

    name: str  # cache entry name
    url: str
    what: str  # for messages
    chain_headers: tuple[str, ...]  # accepted names of the issuer-chain header, first preferred
    not_found: str  # what an HTTP 404 means for this document


@dataclass(frozen=True, slots=True)
class _Fetched:
    url: str
    body: bytes
    headers: dict[str, list[str]]


def _display(url: str) -> str:
    """The URL without user information, for messages, logs and the cache (never credentials)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _api_base(base_url: str, what: str = "the PCS URL") -> str:
    """``{base}/sgx/certification/v4`` from a service URL, which may already end with it."""
    try:
        parts = urlsplit(base_url.strip())
        host, _ = parts.hostname, parts.port  # .port raises ValueError for a bad port
    except ValueError as exc:
        raise UsageError(f"{what} is not a URL: {exc}", found=_display(base_url)) from None
    if parts.scheme not in ("http", "https") or not host:
        raise UsageError(
            f"{what} must be an http(s) URL with a host",
            expected="e.g. https://api.trustedservices.intel.com or https://pccs.example:8081",
            found=_display(base_url),
        )
    if parts.query or parts.fragment:
        raise UsageError(f"{what} must not carry a query or fragment", found=_display(base_url))
    path = parts.path.rstrip("/")
    if path.endswith(_API_PATH):
        path = path[: -len(_API_PATH)]
    return urlunsplit((parts.scheme, parts.netloc, path + _API_PATH, "", ""))


def _check_url(url: str, what: str) -> None:
    """An absolute http(s) URL with a host (a query is fine here)."""
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port
    except ValueError as exc:
        raise UsageError(f"{what} is not a URL: {exc}", found=_display(url)) from None
    if parts.scheme not in ("http", "https") or not host:
        raise UsageError(f"{what} must be an http(s) URL with a host", found=_display(url))


def _is_intel_pcs(api_base: str) -> bool:
    return urlsplit(api_base).hostname == urlsplit(INTEL_PCS_URL).hostname


class PcsClient:
    """Async client for Intel's PCS or a PCCS (API v4), with the on-disk collateral cache.

    Use it as an async context manager around one ``aiohttp.ClientSession`` (created here unless
    ``session`` is given; a given session is not closed)::

        async with PcsClient("https://api.trustedservices.intel.com") as pcs:
            collateral = await pcs.collateral_for_quote(quote, at=datetime.now(UTC))

    ``base_url`` is the service root; ``/sgx/certification/v4`` is appended unless present.
    ``cache_dir`` defaults to :func:`default_cache_dir`. ``timeout`` bounds each request
    (connect, headers and body). ``root_ca_crl_url`` fetches the root CA CRL from there instead
    of ``{base}/sgx/certification/v4/rootcacrl`` (with Intel's PCS the default is the root CA's
    CRL distribution point, :data:`INTEL_ROOT_CA_CRL_URL`).

    Raises :class:`UsageError` for a malformed ``base_url``.
    """

    def __init__(
        self,
        base_url: str,
        *,
        cache_dir: Path | None = None,
        timeout: float = PCS_TIMEOUT_S,
        session: aiohttp.ClientSession | None = None,
        root_ca_crl_url: str | None = None,
        max_response_bytes: int = MAX_PCS_RESPONSE_BYTES,
    ) -> None:
        self._api = _api_base(base_url)
        if root_ca_crl_url is not None:
            _check_url(root_ca_crl_url, "root_ca_crl_url")
            self._root_ca_crl_url = root_ca_crl_url
        elif _is_intel_pcs(self._api):
            self._root_ca_crl_url = INTEL_ROOT_CA_CRL_URL
        else:
            self._root_ca_crl_url = self._api + "/rootcacrl"
        if timeout <= 0 or max_response_bytes <= 0:
            raise UsageError("timeout and max_response_bytes must be positive")
        self._timeout = timeout
        self._max_bytes = max_response_bytes
        self._store = CollateralStore(cache_dir if cache_dir is not None else default_cache_dir())
        self._session = session
        self._owns_session = session is None
        self._state: Literal["unopened", "open", "closed"] = "unopened"
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def api_url(self) -> str:
        """The v4 API root this client talks to (``.../sgx/certification/v4``)."""
        return self._api

    @property
    def root_ca_crl_url(self) -> str:
        """Where the root CA CRL is fetched from."""
        return self._root_ca_crl_url

    @property
    def cache_dir(self) -> Path:
        """The on-disk cache directory."""
        return self._store.directory

    async def __aenter__(self) -> Self:
        if self._state == "closed":
            raise RuntimeError("a PcsClient cannot be reopened once closed")
        if self._session is None:
            # aiohttp takes ~0.2 s to import; only commands that fetch should pay for it.
            import aiohttp

            self._session = aiohttp.ClientSession(
                headers={"User-Agent": f"golem-graphene/{__version__}"},
                trust_env=True,  # honour HTTPS_PROXY / NO_PROXY like other tools
            )
        self._state = "open"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session if this client created it."""
        self._state = "closed"
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    # -- public API --------------------------------------------------------------------------

    async def collateral_for_quote(self, quote: Quote, *, at: datetime) -> QuoteCollateral:
        """Collateral for ``quote``: its FMSPC and PCK CA kind come from the PCK leaf certificate.

        Raises :class:`~golem_graphene.errors.CertificationDataError` when the quote carries no
        PCK certificate chain (certification data type 5), ``CertificateChainError`` when the
        chain or its SGX extension is unreadable, and what :meth:`collateral` raises.
        """
        leaf = pki.load_pem_chain(quote.pck_chain_pem(), "the quote's PCK certificate chain", 3)[0]
        fmspc = PckExtension.from_certificate(leaf).fmspc
        ca = cast(PckCaKind, pck_ca_kind(pki.common_name(leaf.issuer)))
        return await self.collateral(fmspc, ca, at=at)

    async def collateral(self, fmspc: bytes, ca: PckCaKind, *, at: datetime) -> QuoteCollateral:
        """The collateral bundle for a platform FMSPC (6 bytes) and PCK CA kind, valid at ``at``.

        Each document comes from memory or disk while ``at <= nextUpdate``, else from the
        service. Raises :class:`CollateralSourceError` for network faults, timeouts, HTTP
        statuses other than 200, oversized responses, an unusable cache directory or a service
        that answers for the wrong platform; :class:`CollateralFormatError` for malformed
        bodies, signatures, CRLs or issuer-chain headers (and ``TcbStatusUnknownError``, also a
        ``CollateralError``, for a TCB status string Intel does not define); :class:`UsageError`
        for bad arguments.
        """
        if len(fmspc) != 6:
            raise UsageError("an FMSPC is 6 bytes", expected=6, found=len(fmspc))
        if ca not in ("processor", "platform"):
            raise UsageError("the PCK CA kind is 'processor' or 'platform'", found=ca)
        if at.tzinfo is None:
            raise UsageError("the verification time must be timezone-aware")
        if self._state != "open" or self._session is None:
            raise RuntimeError("use 'async with PcsClient(...)' before fetching")
        fmspc_hex = fmspc.hex().upper()
        # Fixed order of error reporting (TCB info first) keeps messages stable across runs.
        results = await asyncio.gather(
            self._tcb_info(fmspc_hex, at),
            self._qe_identity(at),
            self._pck_crl(ca, at),
            self._root_ca_crl(at),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        tcb_info, qe_identity, pck_crl, root_crl = cast(
            tuple[SignedDocument, SignedDocument, CrlDocument, CrlDocument], tuple(results)
        )
        assert pck_crl.issuer_chain is not None  # the PCK CRL spec requires its header
        return QuoteCollateral(
            pck_crl_issuer_chain=pck_crl.issuer_chain,
            root_ca_crl=root_crl.der,
            pck_crl=pck_crl.der,
            tcb_info_issuer_chain=tcb_info.issuer_chain,
            tcb_info=tcb_info.raw,
            tcb_info_signature=tcb_info.signature,
            qe_identity_issuer_chain=qe_identity.issuer_chain,
            qe_identity=qe_identity.raw,
            qe_identity_signature=qe_identity.signature,
        )

    # -- the four documents ------------------------------------------------------------------

    async def _tcb_info(self, fmspc_hex: str, at: datetime) -> SignedDocument:
        spec = _Spec(
            name=f"tcb_info-{fmspc_hex}",
            url=f"{self._api}/tcb?fmspc={fmspc_hex}",
            what=f"TCB info for FMSPC {fmspc_hex}",
            chain_headers=_TCB_HEADERS,
            not_found=f"the service has no TCB info for FMSPC {fmspc_hex} (unknown platform, "
            "or a PCCS that has not cached it)",
        )

        def parse(r: CachedResponse) -> SignedDocument:
            return parse_tcb_info_response(
                r.body, r.issuer_chain_header, _TCB_HEADERS[0], _display(r.url), fmspc=fmspc_hex
            )

        return await self._document(spec, parse, at)

    async def _qe_identity(self, at: datetime) -> SignedDocument:
        spec = _Spec(
            name="qe_identity",
            url=f"{self._api}/qe/identity",
            what="QE identity",
            chain_headers=_QE_HEADERS,
            not_found="the service has no SGX QE identity",
        )

        def parse(r: CachedResponse) -> SignedDocument:
            return parse_qe_identity_response(
                r.body, r.issuer_chain_header, _QE_HEADERS[0], _display(r.url)
            )

        return await self._document(spec, parse, at)

    async def _pck_crl(self, ca: PckCaKind, at: datetime) -> CrlDocument:
        spec = _Spec(
            name=f"pck_crl-{ca}",
            url=f"{self._api}/pckcrl?ca={ca}&encoding=der",
            what=f"PCK CRL (ca={ca})",
            chain_headers=_PCK_CRL_HEADERS,
            not_found=f"the service has no PCK CRL for ca={ca}",
        )

        def parse(r: CachedResponse) -> CrlDocument:
            return parse_crl_response(
                r.body, r.issuer_chain_header, _PCK_CRL_HEADERS[0], _display(r.url), spec.what
            )

        return await self._document(spec, parse, at)

    async def _root_ca_crl(self, at: datetime) -> CrlDocument:
        spec = _Spec(
            name="root_ca_crl",
            url=self._root_ca_crl_url,
            what="root CA CRL",
            chain_headers=(),
            not_found="no root CA CRL there (Intel's PCS has no /rootcacrl; pass "
            f"root_ca_crl_url, e.g. {INTEL_ROOT_CA_CRL_URL})",
        )

        def parse(r: CachedResponse) -> CrlDocument:
            return parse_crl_response(r.body, None, None, _display(r.url), spec.what)

        return await self._document(spec, parse, at)

    # -- cache, then network -----------------------------------------------------------------

    async def _document(
        self, spec: _Spec, parse: Callable[[CachedResponse], _D], at: datetime
    ) -> _D:
        lock = self._locks.setdefault(spec.name, asyncio.Lock())
        async with lock:
            remembered = self._store.recall(spec.name, at)
            if remembered is not None:
                return cast(_D, remembered)
            cached = await asyncio.to_thread(self._store.read, spec.name)
            if cached is not None:
                try:
                    doc = parse(cached)
                except (CollateralError, CollateralSourceError) as exc:
                    await asyncio.to_thread(self._store.discard, spec.name, exc.describe())
                else:
                    if at <= doc.next_update:
                        _log.debug("collateral_cache.hit", entry=spec.name)
                        self._store.remember(spec.name, doc.next_update, doc)
                        return doc
                    _log.debug(
                        "collateral_cache.stale",
                        entry=spec.name,
                        next_update=doc.next_update.isoformat(),
                        at=at.isoformat(),
                    )
            fetched = await self._get(spec)
            response = CachedResponse(
                url=_display(fetched.url),
                body=fetched.body,
                issuer_chain_header=_one_header(fetched, spec.chain_headers),
            )
            doc = parse(response)
            await asyncio.to_thread(self._store.write, spec.name, response, datetime.now(UTC))
            self._store.remember(spec.name, doc.next_update, doc)
            return doc

    async def _get(self, spec: _Spec) -> _Fetched:
        """GET with a total timeout and a size bound; status 200 only."""
        import aiohttp  # already imported by __aenter__; see there

        assert self._session is not None
        shown = _display(spec.url)
        try:
            async with self._session.get(
                spec.url, timeout=aiohttp.ClientTimeout(total=self._timeout)
            ) as resp:
                if resp.status != 200:
                    raise CollateralSourceError(_status_message(spec, shown, resp))
                length = resp.content_length
                if length is not None and length > self._max_bytes:
                    raise _too_large(spec, shown, self._max_bytes, f"Content-Length {length}")
                body = bytearray()
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    body += chunk
                    if len(body) > self._max_bytes:
                        raise _too_large(spec, shown, self._max_bytes, "more bytes were sent")
                headers = {
                    name: resp.headers.getall(name, [])
                    for name in spec.chain_headers
                    if name in resp.headers
                }
        except TimeoutError as exc:
            raise CollateralSourceError(
                f"{spec.what}: GET {shown} timed out after {self._timeout:g} s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise CollateralSourceError(
                f"{spec.what}: GET {shown} failed: {_client_error(exc)}"
            ) from exc
        _log.debug("pcs.fetched", url=shown, bytes=len(body))
        return _Fetched(url=spec.url, body=bytes(body), headers=headers)


def _one_header(fetched: _Fetched, names: tuple[str, ...]) -> str | None:
    """The issuer-chain header value (first accepted name present), refusing duplicates."""
    for name in names:
        values = fetched.headers.get(name)
        if values:
            if len(values) > 1:
                raise CollateralFormatError(
                    f"the response from {_display(fetched.url)} has {len(values)} {name} headers"
                )
            return values[0]
    return None


def _too_large(spec: _Spec, shown: str, limit: int, detail: str) -> CollateralSourceError:
    return CollateralSourceError(
        f"{spec.what}: the response from {shown} is too large ({detail})",
        expected=f"<= {limit} bytes",
    )


def _status_message(spec: _Spec, shown: str, resp: aiohttp.ClientResponse) -> str:
    message = f"{spec.what}: GET {shown} answered HTTP {resp.status}"
    if resp.reason:
        message += f" {_printable(resp.reason)}"
    if resp.status == 404:
        message += f": {spec.not_found}"
    elif resp.status == 429:
        message += ": rate limited, try again later"
    extras = [
        f"{name} {_printable(resp.headers[name])}"
        for name in _DIAGNOSTIC_HEADERS
        if name in resp.headers
    ]
    if extras:
        message += " (" + ", ".join(extras) + ")"
    return message


def _printable(text: str, limit: int = 200) -> str:
    """Server-supplied text made safe for one line of output."""
    clean = "".join(c if c.isprintable() else "?" for c in text)
    return clean if len(clean) <= limit else clean[:limit] + "..."


def _client_error(exc: BaseException) -> str:
    # aiohttp messages name host and port but not credentials; keep them to one line.
    return _printable(f"{type(exc).__name__}: {exc}", 300)


def collateral_for_quote(
    quote: Quote,
    base_url: str,
    *,
    cache_dir: Path | None = None,
    at: datetime | None = None,
    timeout: float = PCS_TIMEOUT_S,
    root_ca_crl_url: str | None = None,
) -> QuoteCollateral:
    """Fetch (or take from the cache) the collateral for ``quote`` from a PCS/PCCS.

    A blocking wrapper around :class:`PcsClient` that runs its own event loop; from async code
    use the client. ``at`` (default now) is the verification time that decides whether cached
    documents are fresh. Raises what :meth:`PcsClient.collateral_for_quote` raises, and
    :class:`UsageError` when called from a running event loop.
    """
    when = at if at is not None else datetime.now(UTC)
    if when.tzinfo is None:
        raise UsageError("the verification time must be timezone-aware")
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise UsageError(
            "collateral_for_quote() runs its own event loop; in async code use PcsClient"
        )

    async def run() -> QuoteCollateral:
        async with PcsClient(
            base_url, cache_dir=cache_dir, timeout=timeout, root_ca_crl_url=root_ca_crl_url
        ) as client:
            return await client.collateral_for_quote(quote, at=when)

    return asyncio.run(run())
