"""The provider's task engine: builds images, drives each task through its lifecycle, recovers.

One :class:`TaskEngine` per provider. Each accepted task gets a driver coroutine that launches
the enclave with the configured runner, publishes its evidence (with collateral attached), waits
for the requestor's sealed inputs, tells the agent to run, relays progress as events and keeps
the sealed outputs. The provider never holds a key that opens an input or an output.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import structlog

from golem_graphene._internal.files import write_atomic
from golem_graphene._internal.tasks import settle
from golem_graphene.errors import (
    ConfigError,
    Error,
    LimitError,
    NotFoundError,
    ProtocolError,
    TransitionError,
)
from golem_graphene.host.image import EnclaveImage, build_image
from golem_graphene.host.runners import EnclaveRunner, make_runner
from golem_graphene.host.sandbox import PidsLimit, kill_session
from golem_graphene.host.session import EnclaveSession
from golem_graphene.host.standby_pool import StandbyPool
from golem_graphene.host.task_package import PackageError, extract_tar
from golem_graphene.images import ImageStore
from golem_graphene.protocol.agent import AgentEvent, Progress, Running, Sealing
from golem_graphene.protocol.binding import format_task_id, new_task_id
from golem_graphene.protocol.messages import new_capability_token
from golem_graphene.protocol.names import TaskState
from golem_graphene.protocol.spec import TaskSpec, spec_digest
from golem_graphene.provider.config import ProviderConfig
from golem_graphene.provider.lifecycle import Task, TaskStore

__all__ = ["REQUESTOR_SPECS", "SpecConflictError", "TaskEngine", "image_key"]

log = structlog.get_logger(__name__)

REQUESTOR_SPECS = "requestor-specs"
"""The folder of ``data_dir`` that keeps the specs requestors uploaded."""


class SpecConflictError(ProtocolError):
    """A requestor uploads a spec under a name the provider has for another spec (HTTP 409)."""

    code = "spec_conflict"
    http_status = 409


@dataclass
class _Running:
    driver: asyncio.Task[None]
    start: asyncio.Event
    session: EnclaveSession | None = None


class TaskEngine:
    """Tasks, images and the runner of one provider."""

    def __init__(self, config: ProviderConfig, runner: EnclaveRunner | None = None) -> None:
        self.config = config
        self.data_dir = config.data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.runner = runner or make_runner(
            config.runner,
            data_dir=self.data_dir,
            allow_insecure=tuple(config.allow_insecure),
            pcs_url=config.pcs_url,
        )
        self.store = TaskStore(self.data_dir / "tasks")
        self.image_store = ImageStore(
            config.image_store_dir,
            max_roots=config.images.max_roots,
            max_bytes=config.images.max_bytes,
        )
        self.pool = StandbyPool(self.runner, self.data_dir / "standby", config.warm_enclaves)
        self._running: dict[str, _Running] = {}
        self._images: dict[str, EnclaveImage] = {}
        self._image_locks: dict[str, asyncio.Lock] = {}
        self._spec_locks: dict[str, asyncio.Lock] = {}
        # Uploads a previous run left half done (its temporary folders and packages).
        for leftover in self.requestor_specs_dir.glob(".upload*"):
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        self._remover = ThreadPoolExecutor(1, thread_name_prefix="task-reclaim")

    # -- specs and images -------------------------------------------------------------------

    def spec_path(self, name: str) -> Path:
        """The spec called ``name``: the operator's (``specs_dir``) first, else one a requestor
        uploaded (``data_dir/requestor-specs``); raises :class:`NotFoundError`."""
        for path in (self.config.specs_dir / name / "task.toml", self._uploaded_spec(name)):
            if path.is_file():
                return path
        raise NotFoundError(f"the provider offers no task spec called {name!r}")

    @property
    def requestor_specs_dir(self) -> Path:
        """Where specs uploaded by requestors are kept, one folder per spec name."""
        return self.data_dir / REQUESTOR_SPECS

    def _uploaded_spec(self, name: str) -> Path:
        return self.requestor_specs_dir / name / "task.toml"

    def offered_specs(self) -> list[dict[str, str]]:
        """The specs this provider runs, with the digests requestors must match."""
        out = []
        for path in sorted(self.config.specs_dir.glob("*/task.toml")):
            with contextlib.suppress(Error):
                out.append({"name": TaskSpec.from_path(path).name, "sha256": spec_digest(path)})
        return out

    async def image_for(self, name: str, digest: str, *, spec: Path | None = None) -> EnclaveImage:
        """The built image of spec ``name`` (built once per spec digest; from the spec file
        ``spec`` when given, else the spec the provider has under that name)."""
        key = image_key(name, digest)
        if key in self._images:
            return self._images[key]
        lock = self._image_locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key not in self._images:
                out = self.data_dir / "images" / key
                try:
                    image = EnclaveImage.load(out)
                except Error:
                    image = await asyncio.to_thread(
                        build_image,
                        spec or self.spec_path(name),
                        out,
                        key_path=self.data_dir / "enclave-key.pem",
                        store=self.image_store,
                        force=True,
                        reuse=False,  # images/<key> is this provider's own cache of them
                    )
                self._images[key] = image
        return self._images[key]

    async def add_requestor_spec(self, name: str, package: Path) -> tuple[str, bool]:
        """Keep the spec a requestor uploaded as the task package ``package`` (a tar of
        ``task.toml`` and its container image) under ``name``, its image built; returns the
        spec's digest and whether it is new.

        The package is unpacked safely (:mod:`golem_graphene.host.task_package`), the spec must
        be called ``name``, ask for no network and open its image by the pinned digest; the
        same name with the same ``task.toml`` bytes is the same spec (not new), other bytes are
        a :class:`SpecConflictError`. At ``images.max_requestor_specs`` the least recently used
        uploaded spec that no unfinished task uses makes room (its folder, built image and
        standby enclaves go). Raises :class:`PackageError`, :class:`ConfigError` (the
        :class:`ImageError` family for a bad image), :class:`ProtocolError` and
        :class:`LimitError` (every kept spec is in use).
        """
        lock = self._spec_locks.setdefault(name, asyncio.Lock())
        async with lock:
            root = self.requestor_specs_dir
            root.mkdir(parents=True, exist_ok=True, mode=0o700)
            staged = Path(tempfile.mkdtemp(prefix=".upload-", dir=root))
            try:
                limit = self.config.images.max_package_bytes
                await asyncio.to_thread(extract_tar, package, staged, max_bytes=limit)
                spec_file = staged / "task.toml"
                if not spec_file.is_file():
                    raise PackageError("the task package has no task.toml at its top level")
                spec = TaskSpec.from_path(spec_file)
                digest = spec_digest(spec_file)
                if spec.name != name:
                    raise ProtocolError(
                        "the spec's name differs from the name it is uploaded under",
                        expected=name,
                        found=spec.name,
                    )
                with contextlib.suppress(NotFoundError):
                    existing = spec_digest(self.spec_path(name))
                    if existing == digest:
                        self._mark_used(name)
                        return digest, False
                    raise SpecConflictError(
                        f"the provider has another spec called {name!r} (name yours apart)",
                        expected=existing,
                        found=digest,
                    )
                if spec.network:
                    raise ConfigError("an uploaded spec may not ask for network access")
                self._make_room_for_a_spec(root, remove=False)
                # Built now, from the staged folder: a bad image is refused here, not at the
                # first task (the image is opened by the spec's pinned digest).
                await self.image_for(name, digest, spec=spec_file)
                # Counted again and moved in without a pause: uploads of other names may have
                # finished while this image built.
                removed = self._make_room_for_a_spec(root, remove=True)
                final = root / name
                if final.exists():  # a folder without its task.toml: nothing anyone uses
                    shutil.rmtree(final)
                os.rename(staged, final)
                log.info("requestor spec added", spec=name, sha256=digest)
                for key, trash in removed:
                    await self._forget_image(key, trash)
                return digest, True
            finally:
                if staged.exists():
                    await asyncio.to_thread(shutil.rmtree, staged, True)

    def _make_room_for_a_spec(self, root: Path, *, remove: bool) -> list[tuple[str, Path]]:
        """Room for one more uploaded spec under ``images.max_requestor_specs``: the least
        recently used specs no unfinished task uses make it (with ``remove``, their folders are
        moved aside now, without a pause, so no task can be created on them; returns their
        image keys and where they went). Raises :class:`LimitError` when every one is in use.
        """
        kept = [p for p in root.iterdir() if not p.name.startswith(".")]
        bound = self.config.images.max_requestor_specs
        if len(kept) < bound:
            return []
        busy = {task.spec_name for task in self.store.all() if not task.terminal}
        idle = sorted((p for p in kept if p.name not in busy), key=lambda p: p.stat().st_mtime)
        victims = idle[: len(kept) - bound + 1]
        if len(kept) - len(victims) >= bound:
            raise LimitError(
                "too_many_specs",
                "the provider keeps as many uploaded specs as it allows, each in use by an "
                "unfinished task",
                status=429,
                expected=f"<= {bound} specs (images.max_requestor_specs)",
                found=len(kept),
            )
        if not remove:
            return []
        removed = []
        for folder in victims:
            key = image_key(folder.name, spec_digest(folder / "task.toml"))
            # Named like an unfinished upload, so a crash before its removal is cleaned at start.
            trash = Path(tempfile.mkdtemp(prefix=".upload-removed-", dir=root))
            os.rename(folder, trash / folder.name)
            removed.append((key, trash))
            log.info("requestor spec removed", spec=folder.name, reason="least recently used")
        return removed

    async def _forget_image(self, key: str, trash: Path) -> None:
        """Drop a removed spec's built image and standby enclaves, and its moved folder."""
        self._images.pop(key, None)
        await self.pool.forget(key)
        await asyncio.to_thread(shutil.rmtree, self.data_dir / "images" / key, True)
        await asyncio.to_thread(shutil.rmtree, trash, True)

    def _mark_used(self, name: str) -> None:
        """An uploaded spec's folder time is its last use (the least recently used go first)."""
        with contextlib.suppress(OSError):
            os.utime(self.requestor_specs_dir / name)

    # -- creation ---------------------------------------------------------------------------

    async def create(
        self, *, owner: str, spec_name: str, spec_sha256: str, nonce: str, requestor_key: str
    ) -> tuple[Task, str]:
        """Accept a task; returns it and its capability token (shown once, stored hashed)."""
        path = self.spec_path(spec_name)
        actual = spec_digest(path)
        if path == self._uploaded_spec(spec_name):
            self._mark_used(spec_name)
        if actual != spec_sha256.lower():
            raise ProtocolError(
                "the spec differs from the provider's copy", expected=actual, found=spec_sha256
            )
        limits = self.config.limits
        if self.store.active_count() >= limits.max_concurrent_tasks:
            raise LimitError(
                "too_many_tasks",
                "the provider runs as many tasks as it allows",
                status=429,
                expected=f"<= {limits.max_concurrent_tasks} "
                "concurrent tasks (limits.max_concurrent_tasks)",
                found="all taken",
            )
        if len(self.store.all()) >= limits.max_queued_tasks:
            raise LimitError(
                "too_many_stored_tasks",
                "delete finished tasks first",
                status=429,
                expected=f"<= {limits.max_queued_tasks} tasks (limits.max_queued_tasks)",
                found=len(self.store.all()),
            )
        token = new_capability_token()
        task = Task(
            task_id=format_task_id(new_task_id()),
            spec_name=spec_name,
            spec_digest=actual,
            nonce=nonce,
            requestor_key=requestor_key,
            owner=owner,
            capability_sha256=hashlib.sha256(token.encode()).hexdigest(),
            runner=self.runner.name,
        )
        self.store.add(task)
        await self.store.event(task, message="task accepted")
        self._spawn(task)
        log.info("task created", task_id=task.task_id, spec=spec_name)
        return task, token

    def _spawn(self, task: Task) -> None:
        start = asyncio.Event()
        driver = asyncio.create_task(self._drive_with_deadline(task), name=f"task-{task.task_id}")
        self._running[task.task_id] = _Running(driver, start)

    # -- the driver -------------------------------------------------------------------------

    async def _drive_with_deadline(self, task: Task) -> None:
        try:
            async with asyncio.timeout(self.config.limits.max_task_seconds):
                await self._drive(task)
        except TimeoutError:
            await self._fail(
                task,
                "task_timeout",
                "the task exceeded limits.max_task_seconds "
                f"({self.config.limits.max_task_seconds:g} s)",
            )
        except asyncio.CancelledError:
            if not task.terminal:
                await self.store.transition(task, TaskState.CANCELLED, message="cancelled")
                log.info("task cancelled", task_id=task.task_id)
            raise
        except Error as exc:
            await self._fail(task, exc.code, exc.describe())
        except Exception as exc:  # a bug: the task fails with a reason, the provider goes on
            await self._fail(task, "internal", f"internal error: {type(exc).__name__}")
            log.exception("task driver crashed", task_id=task.task_id)
        finally:
            running = self._running.get(task.task_id)
            try:
                if running and running.session:
                    # Shielded inside: a cancel arriving now (the requestor cancels a task it
                    # saw fail) must not skip the wait that stops the attestation device, nor
                    # the reclaim below.
                    await running.session.close()
            finally:
                # On a thread of its own: removing a task's files (inputs of gigabytes) would
                # stall every other request for as long, and in the shared executor it would
                # wait behind other work (first launches hash thousands of trusted files).
                try:
                    loop = asyncio.get_running_loop()
                    await asyncio.shield(
                        loop.run_in_executor(self._remover, self._remove_files, task)
                    )
                finally:
                    self._running.pop(task.task_id, None)

    async def _fail(self, task: Task, code: str, message: str) -> None:
        if not task.terminal:
            # Recorded before it is logged: a logger that fails (stderr on a full disk, a
            # closed pipe) must not leave the task running forever with no driver.
            await self.store.transition(
                task, TaskState.FAILED, failure={"code": code, "message": message[:2000]}
            )
            log.warning("task failed", task_id=task.task_id, code=code)

    def launch_dir(self, task_id: str) -> Path:
        return self.store.directory(task_id) / "launch"

    def outputs_dir(self, task_id: str) -> Path:
        return self.store.directory(task_id) / "outputs"

    def io_dir(self, task_id: str) -> Path:
        return self.launch_dir(task_id) / "io"

    async def _drive(self, task: Task) -> None:
        running = self._running[task.task_id]
        if task.state is not TaskState.LAUNCHING:  # a resumed task may be launching already
            await self.store.transition(task, TaskState.LAUNCHING)
        image = await self.image_for(task.spec_name, task.spec_digest)
        session = await self._enclave_for(task, image, running)
        task.pid = session.pid
        self.store.save(task)
        # Step 2: the agent learns its task only now, and binds it and its fresh keys in the
        # quote.
        evidence = await session.attest(task.task_id, task.nonce, task.requestor_key)
        write_atomic(self.store.directory(task.task_id) / "evidence.json", evidence.to_json())
        await self.store.transition(task, TaskState.ATTESTED)
        log.info("task attested", task_id=task.task_id)
        await running.start.wait()

        async def relay(event: AgentEvent) -> None:
            if isinstance(event, Running):
                await self.store.transition(task, TaskState.RUNNING)
                log.info("task running", task_id=task.task_id)
            elif isinstance(event, Sealing):
                await self.store.transition(task, TaskState.SEALING)
            elif isinstance(event, Progress):
                await self.store.event(
                    task,
                    bytes_done=event.bytes_done,
                    bytes_total=event.bytes_total,
                    message=f"{event.phase} {event.name}",
                )

        outcome = await session.run(relay)
        await session.collect_outputs(self.outputs_dir(task.task_id))
        task.exit_status = outcome.exit_status
        task.termination = outcome.termination
        await self.store.transition(task, TaskState.DONE, message="outputs sealed")
        log.info(
            "task done",
            task_id=task.task_id,
            exit_status=outcome.exit_status,
            termination=outcome.termination,
        )

    async def _enclave_for(
        self, task: Task, image: EnclaveImage, running: _Running
    ) -> EnclaveSession:
        """A ready enclave for ``task`` in its launch folder (recorded in ``running``, so the
        driver reclaims it whatever happens next): a standby one when the pool has one, else
        one launched now."""
        standby = await self.pool.take(image_key(task.spec_name, task.spec_digest), image)
        if standby is not None:
            try:
                standby.adopt(
                    self.launch_dir(task.task_id),
                    self.store.directory(task.task_id) / "enclave.log",
                )
                running.session = standby
                log.info("enclave launched", task_id=task.task_id, pid=standby.pid, standby=True)
                return standby
            except OSError as exc:
                log.warning("standby enclave not adopted", task_id=task.task_id, error=str(exc))
                await standby.close()
                standby.remove_files()
        session = await EnclaveSession.launch(
            self.runner,
            image,
            self.launch_dir(task.task_id),
            stderr_path=self.store.directory(task.task_id) / "enclave.log",
        )
        running.session = session
        await session.wait_ready()
        log.info("enclave launched", task_id=task.task_id, pid=session.pid, standby=False)
        return session

    def _reclaim(self, task: Task) -> None:
        """Remove everything but the sealed outputs and the record; forget the driver."""
        self._remove_files(task)
        self._running.pop(task.task_id, None)

    def _remove_files(self, task: Task) -> None:
        """Remove the launch folder, and the outputs unless the task is done."""
        shutil.rmtree(self.launch_dir(task.task_id), ignore_errors=True)
        if task.state is not TaskState.DONE:
            shutil.rmtree(self.outputs_dir(task.task_id), ignore_errors=True)

    # -- requests during the task -------------------------------------------------------------

    def evidence(self, task: Task) -> bytes:
        path = self.store.directory(task.task_id) / "evidence.json"
        if task.state in (TaskState.CREATED, TaskState.LAUNCHING) or not path.exists():
            raise TransitionError("the enclave has not attested yet", found=task.state.value)
        return path.read_bytes()

    async def begin(self, task: Task) -> None:
        """The requestor's inputs and sealed manifest are in place: let the agent run."""
        if task.state is not TaskState.ATTESTED:
            raise TransitionError(
                "inputs can start a task only once it is attested", found=task.state.value
            )
        if not (self.io_dir(task.task_id) / "manifest.sealed").is_file():
            raise TransitionError("upload the sealed input manifest first")
        running = self._running.get(task.task_id)
        if running is None:
            raise TransitionError("the task is not running on this provider")
        await self.store.transition(task, TaskState.INPUTS_RECEIVED)
        log.info("task inputs received", task_id=task.task_id)
        running.start.set()

    async def cancel(self, task: Task) -> None:
        running = self._running.get(task.task_id)
        if running is not None:
            # A task that already ended is only reclaiming (killing the enclave, removing its
            # launch folder): let that finish rather than interrupt it.
            if not task.terminal:
                running.driver.cancel()
            await settle([running.driver])  # its outcome is the driver's; ours may raise
        if not task.terminal:
            await self.store.transition(task, TaskState.CANCELLED, message="cancelled")
            log.info("task cancelled", task_id=task.task_id)

    async def delete(self, task: Task) -> None:
        await self.cancel(task)
        shutil.rmtree(self.store.directory(task.task_id), ignore_errors=True)
        self.store.remove(task.task_id)
        log.info("task deleted", task_id=task.task_id)

    # -- restart ------------------------------------------------------------------------------

    async def recover(self) -> dict[str, int]:
        """Account for every task a previous provider process accepted."""
        counts = {"resumed": 0, "failed": 0, "kept": 0}
        # Enclaves the crash left running (one launched as the provider died misses its
        # parent-death signal, and its pid may not be recorded): found by their launch folders.
        _kill_leftovers(self.store.root, rb"[0-9a-f]{32}/launch/")
        _kill_leftovers(self.pool.root, rb"[0-9a-f]{16}/launch/")
        shutil.rmtree(self.pool.root, ignore_errors=True)
        for task in self.store.load():
            if task.terminal:
                self._reclaim(task)
                counts["kept"] += 1
                continue
            _kill_leftover(task.pid, self.launch_dir(task.task_id))

            if task.state in (TaskState.CREATED, TaskState.LAUNCHING):
                # Not attested yet: no evidence was published (GET evidence answers only from
                # attested on), so nothing a requestor holds depends on the enclave that died
                # with us: launch it again, from a clean folder.
                shutil.rmtree(self.launch_dir(task.task_id), ignore_errors=True)
                (self.store.directory(task.task_id) / "evidence.json").unlink(missing_ok=True)
                self._spawn(task)
                counts["resumed"] += 1
                continue
            await self._fail(
                task,
                "provider_restarted",
                f"the provider restarted while the task was {task.state.value}; the "
                "enclave and its keys are gone, so it cannot resume",
            )
            self._reclaim(task)
            counts["failed"] += 1
        PidsLimit.reclaim_stale()
        for stray in self.store.root.glob("*/launch/io/inputs/*.part"):
            stray.unlink(missing_ok=True)
        # A crash inside an atomic write (state.json, evidence.json) leaves its temporary file.
        for stray in self.store.root.glob("*/.*.tmp"):
            stray.unlink(missing_ok=True)
        for folder in self.store.root.iterdir():
            if folder.is_dir() and not (folder / "state.json").exists():
                # Made by a create that never recorded its task, so never answered 201.
                shutil.rmtree(folder, ignore_errors=True)
        log.info("recovered tasks", **counts)
        return counts

    async def close(self) -> None:
        """Cancel every running task (the enclaves die with their sessions), stop the pool."""
        await self.pool.close()
        for task_id, running in list(self._running.items()):
            task = self.store.get(task_id)
            if task is None or not task.terminal:  # an ended task is only reclaiming
                running.driver.cancel()
            await settle([running.driver])
            self._running.pop(task_id, None)
        self._remover.shutdown(wait=True)


def image_key(spec_name: str, spec_digest: str) -> str:
    """The name of a spec's image (its folder under ``images/``, its standby enclaves)."""
    return f"{spec_name}-{spec_digest[:16]}"


def _kill_leftovers(root: Path, launch_folder: bytes) -> None:
    """Kill every enclave process whose command line or working folder is a launch folder
    under ``root`` (``root/<launch_folder>``, a task's or a standby enclave's; none is
    legitimately running before recovery)."""
    marker = str(root.resolve()) + "/"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            cwd = os.readlink(entry / "cwd") + "/"
        except OSError:
            continue
        if not _runs_an_enclave(cmdline):
            continue
        if re.search(re.escape(marker.encode()) + launch_folder, cmdline) or (
            cwd.startswith(marker) and "/launch/" in cwd[len(marker) :]
        ):
            kill_session(int(entry.name))


def _kill_leftover(pid: int | None, launch_dir: Path) -> None:
    """Kill a previous run's enclave session, if that pid still is one of ours: an enclave
    launcher working in the task's launch folder (a pid reused by anyone else is left alone,
    whatever its command line says)."""
    if not pid:
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return
    if _runs_an_enclave(cmdline) and cwd.is_relative_to(launch_dir.resolve()):
        kill_session(pid)


_ENCLAVE_LAUNCHERS = frozenset({b"bwrap", b"prlimit", b"gramine-sgx", b"gramine-direct", b"loader"})


def _runs_an_enclave(cmdline: bytes) -> bool:
    """True when the program (argv[0]) is one the runners start an enclave with."""
    program = cmdline.split(b"\0", 1)[0]
    return program.rsplit(b"/", 1)[-1] in _ENCLAVE_LAUNCHERS
