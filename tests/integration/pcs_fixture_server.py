"""A PCCS-like HTTP server on 127.0.0.1 that serves a DCAP test pack's recorded collateral.

Responses are rebuilt from the pack's ``collateral.json`` the way Intel's PCS / PCCS (API v4)
shape them: body ``{"tcbInfo":<raw>,"signature":"<hex>"}`` with the issuer chain URL-encoded in
``TCB-Info-Issuer-Chain``; ``{"enclaveIdentity":<raw>,"signature":"<hex>"}`` with
``SGX-Enclave-Identity-Issuer-Chain``; the PCK CRL as DER (``encoding=der``) or PEM with
``SGX-PCK-CRL-Issuer-Chain``; ``/rootcacrl`` as the hex text of the DER CRL (as PCCS does).

The server runs its own event loop in a thread, so synchronous code (the CLI, which runs its own
loop) and async tests can both talk to it. Tests replace a route's answer with :class:`Canned`
and read what was asked from :attr:`PcsFixtureServer.requests`.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import quote

from aiohttp import web

API = "/sgx/certification/v4"
ROUTES = ("tcb", "qe_identity", "pckcrl", "rootcacrl", "root_der")


@dataclass(frozen=True)
class Canned:
    """A fixed answer for a route; ``chunked`` streams the body without a Content-Length and
    ``delay`` (seconds) holds the answer back."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    chunked: bool = False
    delay: float = 0.0


def url_encode_chain(pem: str) -> str:
    """URL-encode a PEM chain as PCS does for its issuer-chain headers."""
    return quote(pem, safe="")


def pem_crl(der: bytes) -> bytes:
    """DER CRL to PEM, 64 columns."""
    b64 = base64.b64encode(der).decode()
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return ("-----BEGIN X509 CRL-----\n" + "\n".join(lines) + "\n-----END X509 CRL-----\n").encode()


def signed_body(member: str, raw: str, signature_hex: str) -> bytes:
    """A PCS JSON body exactly as PCS shapes it (compact, member first, then the signature)."""
    return ('{"' + member + '":' + raw + ',"signature":"' + signature_hex + '"}').encode()


class PcsFixtureServer:
    """Serve recorded collateral for one FMSPC; see the module docstring."""

    def __init__(self, collateral: dict[str, str], fmspc: str) -> None:
        self.fmspc = fmspc.upper()
        self.collateral = collateral
        self.root_crl_format = "hex"  # "hex" (PCCS), "der" or "pem"
        self.pck_crl_cas = {"processor"}
        self.ignore_crl_encoding = False  # answer PEM even when DER is asked for
        self.overrides: dict[str, Canned] = {}
        self.requests: list[str] = []
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- answers -----------------------------------------------------------------------------

    def default(self, route: str, *, ca: str = "processor", der: bool = True) -> Canned:
        """The well-formed answer a PCCS would give for ``route``."""
        c = self.collateral
        if route == "tcb":
            return Canned(
                body=signed_body("tcbInfo", c["tcb_info"], c["tcb_info_signature"]),
                headers={
                    "Content-Type": "application/json",
                    "TCB-Info-Issuer-Chain": url_encode_chain(c["tcb_info_issuer_chain"]),
                },
            )
        if route == "qe_identity":
            return Canned(
                body=signed_body("enclaveIdentity", c["qe_identity"], c["qe_identity_signature"]),
                headers={
                    "Content-Type": "application/json",
                    "SGX-Enclave-Identity-Issuer-Chain": url_encode_chain(
                        c["qe_identity_issuer_chain"]
                    ),
                },
            )
        if route == "pckcrl":
            if ca not in self.pck_crl_cas:
                return Canned(status=404)
            crl = bytes.fromhex(c["pck_crl"])
            use_der = der and not self.ignore_crl_encoding
            return Canned(
                body=crl if use_der else pem_crl(crl),
                headers={
                    "Content-Type": "application/pkix-crl" if use_der else "application/x-pem-file",
                    "SGX-PCK-CRL-Issuer-Chain": url_encode_chain(c["pck_crl_issuer_chain"]),
                },
            )
        if route in ("rootcacrl", "root_der"):
            crl = bytes.fromhex(c["root_ca_crl"])
            fmt = "der" if route == "root_der" else self.root_crl_format
            body = {"hex": crl.hex().encode(), "der": crl, "pem": pem_crl(crl)}[fmt]
            return Canned(body=body, headers={"Content-Type": "application/x-pem-file"})
        raise KeyError(route)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        route: str | None = None
        canned: Canned
        if path == f"{API}/tcb":
            route = "tcb"
            fmspc = request.query.get("fmspc", "")
            canned = self.default("tcb") if fmspc.upper() == self.fmspc else Canned(status=404)
            if len(fmspc) != 12:
                canned = Canned(status=400)
        elif path == f"{API}/qe/identity":
            route = "qe_identity"
            canned = self.default("qe_identity")
        elif path == f"{API}/pckcrl":
            route = "pckcrl"
            ca = request.query.get("ca", "")
            if ca not in ("processor", "platform"):
                canned = Canned(status=400)
            else:
                der = request.query.get("encoding", "pem").lower() == "der"
                canned = self.default("pckcrl", ca=ca, der=der)
        elif path == f"{API}/rootcacrl":
            route = "rootcacrl"
            canned = self.default("rootcacrl")
        elif path == "/IntelSGXRootCA.der":
            route = "root_der"
            canned = self.default("root_der")
        else:
            canned = Canned(status=404)
        with self._lock:
            self.requests.append(request.path_qs)
            self.counts[route or "other"] += 1
            canned = self.overrides.get(route or "", canned)
        headers = {"Request-ID": "fixture-0001", **canned.headers}
        if canned.delay:
            await asyncio.sleep(canned.delay)
        if not canned.chunked:
            return web.Response(status=canned.status, body=canned.body, headers=headers)
        response = web.StreamResponse(status=canned.status, headers=headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        for i in range(0, len(canned.body), 65536):
            await response.write(canned.body[i : i + 65536])
        await response.write_eof()
        return response

    # -- control -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The service root, e.g. ``http://127.0.0.1:40123``."""
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        """Back to well-formed answers and no recorded requests."""
        with self._lock:
            self.overrides.clear()
            self.requests.clear()
            self.counts.clear()
        self.root_crl_format = "hex"
        self.pck_crl_cas = {"processor"}
        self.ignore_crl_encoding = False

    def total_requests(self) -> int:
        """How many requests the server has seen since the last reset."""
        with self._lock:
            return len(self.requests)

    def start(self) -> None:
        """Listen on a random loopback port in a background thread."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="pcs-fixture", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), loop).result(timeout=10)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    def stop(self) -> None:
        """Stop serving and end the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> PcsFixtureServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
