"""Standby enclaves: agents started ahead of their tasks, so that a task does not wait for one.

Starting an enclave (the sandbox or Gramine, then the agent's interpreter and imports) is most
of a short task's latency. The pool keeps up to ``per_image`` started enclaves of each image in
use that reported ``ready`` and wait for their ``attest`` command. A task takes one, its launch
folder is renamed into the task's folder (the sandbox's bind mounts and the enclave's working
folder follow the folder, not its path), its wall-clock limit starts, and a replacement starts
in the background.

Each standby enclave serves exactly one task and then exits, like any other: it makes its keys
only after it learns its task, so nothing is shared between tasks, and the requestor's checks
(fresh nonce and keys bound in the quote) are the same whether the enclave waited or not.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
from pathlib import Path

import structlog

from golem_graphene._internal.tasks import settle
from golem_graphene.host.image import EnclaveImage
from golem_graphene.host.runners import EnclaveRunner
from golem_graphene.host.session import LOG_NAME, EnclaveSession

__all__ = ["StandbyPool"]

log = structlog.get_logger(__name__)

LAUNCH_FOLDER = "launch"


async def _discard(session: EnclaveSession) -> None:
    """Kill a standby enclave and remove its folder."""
    await session.close()
    shutil.rmtree(session.launch_dir.parent, ignore_errors=True)


class StandbyPool:
    """Up to ``per_image`` standby enclaves per image, under ``root`` (0 disables the pool).

    Only the ``max_images`` images most recently used keep standby enclaves (an image whose
    spec changed is never used again, and its enclaves would otherwise hold memory forever).
    ``root`` must be on the file system of the task folders, which standby launch folders are
    renamed into.
    """

    def __init__(
        self, runner: EnclaveRunner, root: Path, per_image: int, *, max_images: int = 8
    ) -> None:
        self.runner = runner
        self.root = root
        self.per_image = per_image
        self.max_images = max_images
        self._ready: dict[str, list[EnclaveSession]] = {}
        self._starting: dict[str, int] = {}
        self._used: dict[str, None] = {}  # image keys, least recently used first
        self._starts: set[asyncio.Task[None]] = set()
        self._closed = False

    def ready_count(self, key: str) -> int:
        """Standby enclaves of image ``key`` ready to be taken now."""
        return len(self._ready.get(key, []))

    def ready_pids(self, key: str) -> list[int]:
        """Process ids of the standby enclaves of image ``key`` ready now, oldest first."""
        return [standby.pid for standby in self._ready.get(key, [])]

    async def wait_ready(self, key: str, timeout: float) -> bool:
        """Wait until the pool of ``key`` is full (for benchmarks and tests); False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.ready_count(key) < self.per_image:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def take(self, key: str, image: EnclaveImage) -> EnclaveSession | None:
        """A ready standby enclave of ``image`` (None if there is none); refills in the
        background either way, so the next task finds one."""
        taken = None
        ready = self._ready.get(key, [])
        while ready and taken is None:
            candidate = ready.pop(0)
            if candidate.running:
                taken = candidate
            else:  # died while waiting (killed from outside, out of memory): not usable
                await _discard(candidate)
        self._used.pop(key, None)
        self._used[key] = None
        while len(self._used) > self.max_images:
            await self._evict(next(iter(self._used)))
        self._fill(key, image)
        return taken

    async def forget(self, key: str) -> None:
        """Image ``key`` is gone (its spec removed): discard its standby enclaves."""
        await self._evict(key)

    async def _evict(self, key: str) -> None:
        """Forget image ``key``: discard its standby enclaves (ones still starting are
        discarded when they are ready)."""
        self._used.pop(key, None)
        for standby in self._ready.pop(key, []):
            await _discard(standby)

    def _fill(self, key: str, image: EnclaveImage) -> None:
        """Start enclaves of ``image`` until ``per_image`` are ready or starting."""
        if self._closed:
            return
        missing = self.per_image - len(self._ready.get(key, [])) - self._starting.get(key, 0)
        for _ in range(max(0, missing)):
            self._starting[key] = self._starting.get(key, 0) + 1
            start = asyncio.create_task(self._start(key, image), name=f"standby-{key}")
            self._starts.add(start)
            start.add_done_callback(self._starts.discard)

    async def _start(self, key: str, image: EnclaveImage) -> None:
        folder = self.root / secrets.token_hex(8)
        standby: EnclaveSession | None = None
        try:
            folder.mkdir(parents=True, mode=0o700)
            standby = await EnclaveSession.launch(
                self.runner,
                image,
                folder / LAUNCH_FOLDER,
                stderr_path=folder / LOG_NAME,
                standby=True,
            )
            await standby.wait_ready()
        except Exception as exc:  # a bug too: never leave a started enclave behind
            # Tasks still launch on demand, and say what is wrong if it is the image.
            log.warning("standby enclave failed to start", image=key, error=str(exc)[:300])

            await _discard_started(standby, folder)
            return
        except asyncio.CancelledError:
            await _discard_started(standby, folder)
            raise
        finally:
            self._starting[key] -= 1
        if self._closed or key not in self._used:
            await _discard(standby)
            return
        self._ready.setdefault(key, []).append(standby)
        log.info("standby enclave ready", image=key, pid=standby.pid)

    async def close(self) -> None:
        """Stop starting enclaves, kill the standby ones and remove their folders."""
        self._closed = True
        for start in list(self._starts):
            start.cancel()
        await settle(list(self._starts))
        for standbys in self._ready.values():
            for standby in standbys:
                await _discard(standby)
        self._ready.clear()
        shutil.rmtree(self.root, ignore_errors=True)


async def _discard_started(standby: EnclaveSession | None, folder: Path) -> None:
    if standby is not None:
        await _discard(standby)
    else:
        shutil.rmtree(folder, ignore_errors=True)
