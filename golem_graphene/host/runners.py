"""Enclave runners: how the provider launches an image (DESIGN.md section 3).

- ``sim``: the simulated SGX platform (:mod:`golem_graphene.host.sim`) in a bubblewrap
  sandbox: the image's simulated SIGSTRUCT is checked and MRENCLAVE recomputed from the manifest
  (as the CPU measures at EINIT), trusted files are hash-checked before start, and
  ``/dev/attestation`` serves quotes over the enclave's identity.
- ``gramine-sgx``: Gramine on an SGX host; real DCAP quotes come through ``/dev/attestation``.
- ``gramine-direct``: Gramine without SGX, for debugging only; refused unless the caller allows
  an insecure run by name, and it produces no attestation.

Every runner starts the enclave in a launch folder holding ``image`` (the image) and ``io`` (the
task's untrusted folder), and talks to the in-enclave agent through its stdin/stdout (the
control pipe, JSON lines). The agent reports ``ready`` once loaded and attests only when told
which task it serves, so an enclave can be started ahead of its task (a *standby* enclave, see
:mod:`golem_graphene.host.standby_pool`) and its launch folder moved into the task's.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import structlog

from golem_graphene._internal.tasks import settle
from golem_graphene.attestation.collateral import QuoteCollateral
from golem_graphene.errors import RunnerError
from golem_graphene.gramine.manifest import Manifest
from golem_graphene.gramine.sgx_host import check_sgx_host, explain_gramine_error
from golem_graphene.host.hermetic import IMAGE_LINK, ROOTFS_LINK
from golem_graphene.host.image import MANIFEST_NAME, EnclaveImage, sim_mrenclave
from golem_graphene.host.sandbox import (
    Mount,
    PidsLimit,
    ResourceLimits,
    SandboxPlan,
    bwrap_command,
    kill_session,
    use_pidfd_child_watcher,
)
from golem_graphene.host.sim.attestation_device import AttestationDevice
from golem_graphene.host.sim.filesystem import (
    TrustedFileCache,
    check_root_trusted,
    image_root,
    sandbox_mounts,
    verify_trusted_files,
)
from golem_graphene.host.sim.platform import EnclaveIdentity, SimPlatform
from golem_graphene.limits import MAX_AGENT_FRAME_BYTES
from golem_graphene.protocol.agent import AgentProtocolError
from golem_graphene.protocol.names import RUNNER_NAMES

__all__ = [
    "EnclaveProcess",
    "EnclaveRunner",
    "GramineDirectRunner",
    "GramineSgxRunner",
    "SimRunner",
    "make_runner",
]

log = structlog.get_logger(__name__)

_SEALING_MARGIN_SECONDS = 120.0
_STDERR_TAIL = 64 * 1024


class EnclaveProcess:
    """A running enclave: the control pipe, its stderr log and how it ended."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        wall_seconds: float,
        cleanup: list[Any] | None = None,
        stderr_path: Path | None = None,
        *,
        standby: bool = False,
    ) -> None:
        self._proc = proc
        self.pid = proc.pid
        self._cleanup = cleanup or []
        self._stderr_path = stderr_path
        self._wall_seconds = wall_seconds
        self._killed_for_timeout = False
        self._watchdog: asyncio.Future[None] | None = None
        if not standby:
            self.arm()

    def arm(self) -> None:
        """Start the wall-clock limit now (a standby enclave's clock starts with its task)."""
        if self._watchdog is None:
            self._watchdog = asyncio.ensure_future(self._watch(self._wall_seconds))

    def relocate(self, stderr_path: Path | None) -> None:
        """The enclave's stderr log moved (a standby enclave taken by a task)."""
        if self._stderr_path is not None:
            self._stderr_path = stderr_path

    @property
    def running(self) -> bool:
        """True until the enclave's process has exited."""
        return self._proc.returncode is None

    async def _watch(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self._proc.wait()
        except TimeoutError:
            self._killed_for_timeout = True
            self.kill()

    async def read_frame(self) -> bytes | None:
        """The agent's next control frame (one line), or None once it closed its output.

        Raises :class:`AgentProtocolError` for a line longer than a frame may be (the stream
        stops buffering at the limit).
        """
        assert self._proc.stdout is not None
        try:
            line = await self._proc.stdout.readline()
        except ValueError:  # longer than the stream's limit
            raise AgentProtocolError(
                "the enclave wrote a frame that is too long",
                expected=f"<= {MAX_AGENT_FRAME_BYTES} bytes",
            ) from None
        if not line:
            return None
        if not line.endswith(b"\n"):
            raise AgentProtocolError("the enclave's last frame has no line feed")
        return line

    async def write_frame(self, frame: bytes) -> None:
        """Write one control frame to the agent."""
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(frame)
            await self._proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise RunnerError("the enclave is gone (control channel closed)") from exc

    async def wait(self) -> int:
        """Wait for exit; returns the exit status (negative: killed by that signal)."""
        code = await self._proc.wait()
        if self._watchdog is not None:
            # The watchdog's own end (it may have been cancelled) is not raised here, while a
            # cancellation of the caller still is.
            await settle([self._watchdog])
        for item in self._cleanup:
            if hasattr(item, "aclose"):  # without blocking the event loop
                await item.aclose()
            elif hasattr(item, "stop"):
                item.stop()
        return code

    @property
    def timed_out(self) -> bool:
        """True when the runner killed the enclave at its wall-clock limit."""
        return self._killed_for_timeout

    def kill(self) -> None:
        """SIGKILL the enclave's whole process tree (its session and pid namespace)."""
        kill_session(self.pid)

    def failure_reason(self) -> str | None:
        """Gramine's error in the enclave's stderr log, explained; None when none is known.

        For a launch that failed (non-zero exit, no attestation), so the operator learns what to
        fix (AESM down, no SGX device, EINIT refused, ...). Reads at most the log's last 64 KiB;
        only the Gramine runners pass a log, as under ``sim`` stderr is the workload's own.
        """
        if self._stderr_path is None:
            return None
        try:
            with open(self._stderr_path, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - _STDERR_TAIL))
                text = f.read(_STDERR_TAIL).decode(errors="replace")
        except OSError:
            return None
        return explain_gramine_error(text)


class EnclaveRunner(Protocol):
    """What the provider needs from a runner."""

    name: str
    simulated: bool

    async def launch(
        self, image: EnclaveImage, launch_dir: Path, *, stderr_path: Path, standby: bool = False
    ) -> EnclaveProcess:
        """Start ``image``'s agent in ``launch_dir``; with ``standby`` its wall-clock limit
        starts only when :meth:`EnclaveProcess.arm` is called (a pre-started enclave)."""
        ...

    async def collateral_for(self, quote: bytes, at: datetime) -> QuoteCollateral | None: ...


def prepare_launch_dir(image: EnclaveImage, launch_dir: Path) -> Path:
    """Lay out ``image`` and ``io`` in ``launch_dir``; returns the ``io`` folder."""
    launch_dir.mkdir(parents=True, exist_ok=True)
    for name, target in (
        (IMAGE_LINK, image.directory),
        (ROOTFS_LINK, image.directory / ROOTFS_LINK),
    ):
        link = launch_dir / name
        if not link.is_symlink() and (target.exists() or name == IMAGE_LINK):
            link.symlink_to(target.resolve())
    io = launch_dir / "io"
    (io / "inputs").mkdir(parents=True, exist_ok=True)
    return io


async def _start(
    cmd: list[str], cwd: Path, stderr_path: Path, env: dict[str, str]
) -> asyncio.subprocess.Process:
    use_pidfd_child_watcher()
    with open(stderr_path, "ab") as err:
        return await asyncio.create_subprocess_exec(
            *cmd,
            cwd=cwd,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            start_new_session=True,
            env=env,
            # The reader's buffer bound: a longer line is refused, never buffered whole.
            limit=MAX_AGENT_FRAME_BYTES,
        )


@dataclass
class SimRunner:
    """The simulated SGX runner; one per provider data directory."""

    data_dir: Path
    name: str = "sim"
    simulated: bool = True
    hash_cache: TrustedFileCache = field(default_factory=TrustedFileCache)
    _platform: SimPlatform | None = None
    _mount_cache: dict[str, tuple[Path, list[Mount]]] = field(default_factory=dict)
    _identities: dict[str, tuple[Manifest, EnclaveIdentity]] = field(default_factory=dict)

    @property
    def platform(self) -> SimPlatform:
        """The simulated platform (created on first use, then loaded)."""
        if self._platform is None:
            self._platform = SimPlatform.load_or_create(self.data_dir)
        return self._platform

    def enclave_identity(self, image: EnclaveImage) -> EnclaveIdentity:
        """Check the image's signature and measure it, as EINIT would.

        Measuring hashes the whole canonical manifest (tens of milliseconds for a Python
        image), so the result is kept per loaded manifest: the sandbox is planned from that
        same in-memory manifest, never re-read from disk, so its measurement cannot change.
        """
        key = str(image.directory)
        cached = self._identities.get(key)
        if cached is not None and cached[0] is image.manifest:
            return cached[1]
        identity = self._measure(image)
        self._identities[key] = (image.manifest, identity)
        return identity

    def _measure(self, image: EnclaveImage) -> EnclaveIdentity:
        signature = image.sim_signature()
        signature.verify()
        measured = sim_mrenclave(image.manifest)
        if measured != signature.mrenclave:
            raise RunnerError(
                "the image's manifest does not match its signature (MRENCLAVE)",
                expected=signature.mrenclave.hex(),
                found=measured.hex(),
            )
        sgx = image.manifest.sgx
        if (sgx.isvprodid, sgx.isvsvn, sgx.debug) != (
            signature.isvprodid,
            signature.isvsvn,
            signature.debug,
        ):
            raise RunnerError("the image's manifest does not match its signature (ISV fields)")
        return EnclaveIdentity(
            mrenclave=measured,
            mrsigner=signature.mrsigner,
            isvprodid=sgx.isvprodid,
            isvsvn=sgx.isvsvn,
            debug=sgx.debug,
        )

    def plan(self, image: EnclaveImage, launch_dir: Path, device_dir: Path) -> SandboxPlan:
        """The sandbox plan for ``image`` started in ``launch_dir`` (trusted files checked)."""
        manifest = image.manifest
        trusted = verify_trusted_files(manifest, launch_dir, self.hash_cache)
        mounts = self._mounts(image, launch_dir, trusted)
        mounts.append(Mount("/dev/attestation", "rw", device_dir))
        if manifest.loader.argv is None:
            raise RunnerError("loader.argv is required by the sim runner")
        env = {}
        for var in manifest.loader.env:
            if var.passthrough:
                raise RunnerError(
                    "loader.env passthrough is refused by the sim runner (host "
                    "environment is untrusted)",
                    found=var.name,
                )
            env[var.name] = var.value or ""
        spec = image.spec
        limits = ResourceLimits(
            wall_seconds=spec.limits.wall_seconds + _SEALING_MARGIN_SECONDS,
            memory_bytes=max(manifest.sgx.enclave_size, 256 << 20),
        )
        return SandboxPlan(
            argv=manifest.loader.argv,
            env=env,
            mounts=mounts,
            workdir=manifest.fs.start_dir or "/",
            network=spec.network,
            limits=limits,
            read_only_root=image_root(manifest, launch_dir) is not None,
            uid=manifest.loader.uid,
            gid=manifest.loader.gid,
        )

    def _mounts(self, image: EnclaveImage, launch_dir: Path, trusted: list[str]) -> list[Mount]:
        """Mounts of ``image`` launched in ``launch_dir``, computed once per image.

        Launch folders differ only in where they are: their ``image`` link points at the same
        image, so the mounts of an earlier launch are rebased rather than recomputed.
        """
        key = f"{image.directory.resolve()}:{image.info['mrenclave']['sim']}"
        cached = self._mount_cache.get(key)
        if cached is None:
            root = image_root(image.manifest, launch_dir)
            if root is not None:
                check_root_trusted(root, trusted)
            mounts = sandbox_mounts(image.manifest, launch_dir, trusted)

            self._mount_cache[key] = (launch_dir, mounts)
            return list(mounts)
        old_base, mounts = cached
        prefix = str(old_base) + "/"
        return [
            Mount(m.target, m.kind, launch_dir / str(m.source)[len(prefix) :])
            if m.source is not None and str(m.source).startswith(prefix)
            else m
            for m in mounts
        ]

    async def launch(
        self, image: EnclaveImage, launch_dir: Path, *, stderr_path: Path, standby: bool = False
    ) -> EnclaveProcess:
        """Start the image's agent in the sandbox; returns once the process runs."""
        identity = self.enclave_identity(image)
        prepare_launch_dir(image, launch_dir)
        device_dir = launch_dir / ".dev-attestation"
        if device_dir.exists():
            shutil.rmtree(device_dir)
        platform = self.platform
        key_names = [m.key_name for m in image.manifest.fs.mounts if m.key_name]
        # As in Gramine, no quote file (and attestation_type "none") without remote attestation.
        quoting = image.manifest.sgx.remote_attestation != "none"
        device = AttestationDevice(
            device_dir, (lambda rd: platform.quote(identity, rd)) if quoting else None, key_names
        )
        plan = await asyncio.to_thread(self.plan, image, launch_dir, device_dir)
        device.prepare()
        pids = PidsLimit.create(plan.limits.max_processes)
        try:
            proc = await _start(
                bwrap_command(plan, pids),
                launch_dir,
                stderr_path,
                {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            )
        except BaseException:
            device.stop()
            if pids:
                pids.stop()
            raise
        try:
            # Served from now: starting the thread overlaps the sandbox's start (the agent
            # uses the device only once told its task, and a program opening
            # user_report_data earlier waits for the thread).
            device.serve()
        except BaseException:
            kill_session(proc.pid)
            await proc.wait()
            device.stop()
            if pids:
                pids.stop()
            raise
        log.info(
            "enclave launched",
            runner=self.name,
            pid=proc.pid,
            mrenclave=identity.mrenclave.hex()[:16],
        )
        cleanup: list[Any] = [device, pids] if pids else [device]
        return EnclaveProcess(proc, plan.limits.wall_seconds, cleanup=cleanup, standby=standby)

    async def collateral_for(self, quote: bytes, at: datetime) -> QuoteCollateral | None:
        """Collateral of the simulated platform, valid at ``at``."""
        return self.platform.collateral(at)


# --- Gramine ---------------------------------------------------------------------------------


@dataclass
class GramineSgxRunner:
    """Gramine with SGX on a real host."""

    pcs_url: str | None = None
    cache_dir: Path | None = None
    name: str = "gramine-sgx"
    simulated: bool = False
    tool: str = "gramine-sgx"

    def command(self, launch_dir: Path) -> list[str]:
        """``gramine-sgx agent``: loads ``agent.manifest.sgx`` and ``agent.sig`` from the cwd."""
        path = shutil.which(self.tool)
        if path is None:
            raise RunnerError(f"{self.tool} is not installed")
        return [path, MANIFEST_NAME.removesuffix(".manifest")]

    async def launch(
        self, image: EnclaveImage, launch_dir: Path, *, stderr_path: Path, standby: bool = False
    ) -> EnclaveProcess:
        if self.tool == "gramine-sgx":
            check = check_sgx_host()
            if not check.usable:
                raise RunnerError(check.describe())
        prepare_launch_dir(image, launch_dir)
        for name in (f"{MANIFEST_NAME}.sgx", "agent.sig", MANIFEST_NAME):
            target = image.directory / name
            if not target.exists() and name != MANIFEST_NAME and self.tool == "gramine-sgx":
                raise RunnerError(f"the image has no {name}: build it on a Gramine host")
            link = launch_dir / name
            if not link.is_symlink() and target.exists():
                link.symlink_to(target.resolve())
        wall = image.spec.limits.wall_seconds + _SEALING_MARGIN_SECONDS
        proc = await _start(
            self.command(launch_dir),
            launch_dir,
            stderr_path,
            {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )
        log.info("enclave launched", runner=self.name, pid=proc.pid)
        return EnclaveProcess(proc, wall, stderr_path=stderr_path, standby=standby)

    async def collateral_for(self, quote: bytes, at: datetime) -> QuoteCollateral | None:
        if self.pcs_url is None:
            return None
        from golem_graphene.attestation.pcs import PcsClient
        from golem_graphene.attestation.quote import Quote

        async with PcsClient(self.pcs_url, cache_dir=self.cache_dir) as client:
            return await client.collateral_for_quote(Quote.from_bytes(quote), at=at)


@dataclass
class GramineDirectRunner(GramineSgxRunner):
    """Gramine without SGX: no isolation from the host, no attestation. Debugging only."""

    name: str = "gramine-direct"
    simulated: bool = True
    tool: str = "gramine-direct"


def make_runner(
    name: str, *, data_dir: Path, allow_insecure: tuple[str, ...] = (), pcs_url: str | None = None
) -> EnclaveRunner:
    """The runner called ``name``; ``gramine-direct`` only when allowed by name."""
    if name == "sim":
        return SimRunner(data_dir)
    if name == "gramine-sgx":
        return GramineSgxRunner(pcs_url=pcs_url, cache_dir=data_dir / "collateral-cache")
    if name == "gramine-direct":
        if "gramine-direct" not in allow_insecure:
            raise RunnerError(
                "the gramine-direct runner gives no protection and no attestation; "
                "it runs only when allowed by name (allow_insecure = "
                '["gramine-direct"])'
            )
        log.warning("INSECURE: gramine-direct runner enabled: no SGX protection, no attestation")
        return GramineDirectRunner()
    raise RunnerError("unknown runner", expected=" or ".join(RUNNER_NAMES), found=name)
