"""A real yagna daemon for one test session: its own folder, offline, loopback only, stopped by PID.

The ``yagna`` binary is PyPI's ``golem-node`` (the ``golem-node`` extra), installed beside this
interpreter. How to start it with no network at all (research by trying, issue 16):

- ``YAGNA_DATADIR``, ``GSB_URL=unix:<folder>/gsb.sock`` and ``YAGNA_API_URL`` on a free loopback
  port: nothing is shared with another yagna on the machine;
- ``YA_NET_TYPE=hybrid`` with the relay (``YA_NET_RELAY_HOST``) on a loopback port where nothing
  listens, ``YA_NET_BIND_URL`` on loopback and ``YA_NET_SESSION_REQUEST_TIMEOUT=300ms``: the relay
  session fails fast and the node serves its REST API anyway (``central`` never does); both
  identities live in this one node, so the market matches locally;
- every chain's ``<CHAIN>_GETH_ADDR`` and the HTTP(S) proxies point at that dead port: the erc20
  driver and the start-up release check reach nothing outside (settlement cannot happen here);
- ``YAGNA_DEV_SKIP_ALLOCATION_VALIDATION=1``: allocations need no on-chain balance;
- ``UNRESPONSIVE_LIMIT_SECONDS``/``INACTIVITY_LIMIT_SECONDS``: raised, since the stand-in
  ExeUnit cannot report usage over the service bus as the real one does every few seconds;
- the hybrid net must know every identity at start: the provider identity is created, then the
  node is restarted once.

Every wait is bounded; a node that does not come up is a :class:`YagnaError` with its log's end.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

YAGNA_BINARY = Path(sys.executable).with_name("yagna")
CHAINS = (
    "MAINNET",
    "GOERLI",
    "HOLESKY",
    "SEPOLIA",
    "HOODI",
    "RINKEBY",
    "POLYGON",
    "MUMBAI",
    "AMOY",
)
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
CLI_TIMEOUT = 30.0
_LOG_TAIL = 3000


class YagnaError(Exception):
    """The daemon did not start, answer or stop as expected (the message says how)."""


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the test process dies (even by os._exit)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Identities:
    """The two identities in the node and their REST application keys."""

    requestor_id: str
    requestor_key: str
    provider_id: str
    provider_key: str


@dataclass
class YagnaNode:
    """One yagna daemon in ``root``; :meth:`start`, :meth:`stop` (by PID), :meth:`cli`."""

    root: Path
    binary: Path = YAGNA_BINARY
    api_port: int = field(default_factory=free_port)
    dead_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def log_path(self) -> Path:
        return self.root / "yagna.log"

    def env(self) -> dict[str, str]:
        """The daemon's (and its CLI's) environment: the machine's, minus anything yagna-ish."""
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.upper().startswith(("YAGNA_", "YA_", "GSB_", "HTTP_", "HTTPS_", "ALL_", "NO_"))
            and not k.upper().endswith(("_GETH_ADDR", "_PROXY"))
        }
        dead = f"http://127.0.0.1:{self.dead_port}"
        gsb = self.root / "gsb.sock"
        if len(str(gsb)) > 100:  # sun_path holds 108 bytes
            raise YagnaError(f"the session folder's path is too long for a unix socket: {gsb}")
        env = {
            **base,
            "HOME": str(self.root / "home"),
            "YAGNA_DATADIR": str(self.root / "data"),
            "YAGNA_LOG_DIR": str(self.root / "logs"),
            "YAGNA_API_URL": self.api_url,
            "GSB_URL": f"unix:{gsb}",
            "YA_NET_TYPE": "hybrid",
            "YA_NET_RELAY_HOST": f"127.0.0.1:{self.dead_port}",
            "YA_NET_BIND_URL": "udp://127.0.0.1:0",
            "YA_NET_SESSION_REQUEST_TIMEOUT": "300ms",
            "YAGNA_DEV_SKIP_ALLOCATION_VALIDATION": "1",
            "UNRESPONSIVE_LIMIT_SECONDS": "300",
            "INACTIVITY_LIMIT_SECONDS": "600",
            "RUST_LOG": "info",
        }
        for chain in CHAINS:
            env[f"{chain}_GETH_ADDR"] = dead
        for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            env[proxy] = env[proxy.lower()] = dead
        return env

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Run ``yagna service run`` and wait (bounded) until its REST API answers."""
        if not self.binary.exists():
            raise YagnaError(f"no yagna binary at {self.binary} (install the golem-node extra)")
        for sub in ("data", "logs", "home"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== start {self.starts} ===\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [str(self.binary), "service", "run", "--disable-metrics-push"],
                env=self.env(),
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + timeout
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while True:
            if self.process.poll() is not None:
                status, self.process = self.process.returncode, None
                raise YagnaError(
                    f"yagna exited with status {status} while starting\n" + self.log_tail()
                )
            try:
                opener.open(f"{self.api_url}/me", timeout=2)
            except urllib.error.HTTPError as exc:
                if exc.code == 401:  # up, and asking for an application key
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise YagnaError(
                    f"yagna's REST API did not answer on {self.api_url} within {timeout:.0f} s\n"
                    + self.log_tail()
                )
            time.sleep(0.1)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM the daemon by its PID, SIGKILL it after ``timeout``; its exit status."""
        proc, self.process = self.process, None
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                return proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
        return proc.wait(5)

    def cli(self, *args: str, timeout: float = CLI_TIMEOUT) -> Any:
        """``yagna --json ARGS`` against this daemon; the parsed JSON answer."""
        try:
            out = subprocess.run(
                [str(self.binary), "--json", *args],
                env=self.env(),
                cwd=self.root,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise YagnaError(f"yagna {' '.join(args)} did not finish in {timeout} s") from exc
        if out.returncode != 0:
            raise YagnaError(
                f"yagna {' '.join(args)} failed ({out.returncode}): {out.stderr.decode()[-1000:]}"
            )
        return json.loads(out.stdout)

    def log_tail(self) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "--- yagna log (end) ---\n" + text[-_LOG_TAIL:]

    def bootstrap(self) -> Identities:
        """Start, make both identities and their keys, restart so the net knows them both."""
        self.start()
        try:
            requestor_key = self.cli("app-key", "create", "requestor")
            requestor_id = self.cli("id", "show")["Ok"]["nodeId"]
            created = self.cli("id", "create", "provider", "--no-password")["Ok"]
            provider_key = self.cli("app-key", "create", "provider", "--id", created["nodeId"])
        except BaseException:
            self.stop()
            raise
        self.stop()
        self.start()
        return Identities(requestor_id, requestor_key, created["nodeId"], provider_key)
