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
import contextlib
import secrets
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from golem_graphene.errors import Error
from golem_graphene.host.image import EnclaveImage
from golem_graphene.host.runners import EnclaveProcess, EnclaveRunner

__all__ = ["StandbyEnclave", "WarmPool"]

log = structlog.get_logger(__name__)

READY_TIMEOUT_SECONDS = 120.0
LAUNCH_FOLDER = "launch"
LOG_NAME = "enclave.log"


@dataclass
class StandbyEnclave:
    """A started enclave that reported ``ready``; ``events`` continues after that event."""

    process: EnclaveProcess
    folder: Path
    events: AsyncIterator[dict[str, Any]]

    @property
    def launch_dir(self) -> Path:
        return self.folder / LAUNCH_FOLDER

    @property
    def log_path(self) -> Path:
        return self.folder / LOG_NAME

    async def discard(self) -> None:
        """Kill the enclave and remove its folder."""
        self.process.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.process.wait(), 10)
        shutil.rmtree(self.folder, ignore_errors=True)


class WarmPool:
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
        self._ready: dict[str, list[StandbyEnclave]] = {}
        self._starting: dict[str, int] = {}
        self._used: dict[str, None] = {}  # image keys, least recently used first
        self._starts: set[asyncio.Task[None]] = set()
        self._closed = False

    def ready_count(self, key: str) -> int:
        """Standby enclaves of image ``key`` ready to be taken now."""
        return len(self._ready.get(key, []))

    def ready_pids(self, key: str) -> list[int]:
        """Process ids of the standby enclaves of image ``key`` ready now, oldest first."""
        return [standby.process.pid for standby in self._ready.get(key, [])]

    async def wait_ready(self, key: str, timeout: float) -> bool:
        """Wait until the pool of ``key`` is full (for benchmarks and tests); False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.ready_count(key) < self.per_image:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def take(self, key: str, image: EnclaveImage) -> StandbyEnclave | None:
        """A ready standby enclave of ``image`` (None if there is none); refills in the
        background either way, so the next task finds one."""
        taken = None
        ready = self._ready.get(key, [])
        while ready and taken is None:
            candidate = ready.pop(0)
            if candidate.process.running:
                taken = candidate
            else:  # died while waiting (killed from outside, out of memory): not usable
                await candidate.discard()
        self._used.pop(key, None)
        self._used[key] = None
        while len(self._used) > self.max_images:
            await self._evict(next(iter(self._used)))
        self._fill(key, image)
        return taken

    async def _evict(self, key: str) -> None:
        """Forget image ``key``: discard its standby enclaves (ones still starting are
        discarded when they are ready)."""
        self._used.pop(key, None)
        for standby in self._ready.pop(key, []):
            await standby.discard()

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
        standby: StandbyEnclave | None = None
        try:
            folder.mkdir(parents=True, mode=0o700)
            process = await self.runner.launch(
                image, folder / LAUNCH_FOLDER, stderr_path=folder / LOG_NAME, standby=True
            )
            standby = StandbyEnclave(process, folder, process.events())
            first = await asyncio.wait_for(anext(standby.events, None), READY_TIMEOUT_SECONDS)
            if first is None or first.get("event") != "ready":
                raise _NotReadyError(first)
        except (Error, OSError, TimeoutError, _NotReadyError) as exc:
            # Tasks still launch on demand, and say what is wrong if it is the image.
            log.warning("standby enclave failed to start", image=key, error=str(exc)[:300])
            await _discard(standby, folder)
            return
        except asyncio.CancelledError:
            await _discard(standby, folder)
            raise
        finally:
            self._starting[key] -= 1
        if self._closed or key not in self._used:
            await standby.discard()
            return
        self._ready.setdefault(key, []).append(standby)
        log.info("standby enclave ready", image=key, pid=standby.process.pid)

    async def close(self) -> None:
        """Stop starting enclaves, kill the standby ones and remove their folders."""
        self._closed = True
        for start in list(self._starts):
            start.cancel()
        for start in list(self._starts):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await start
        for standbys in self._ready.values():
            for standby in standbys:
                await standby.discard()
        self._ready.clear()
        shutil.rmtree(self.root, ignore_errors=True)


class _NotReadyError(Exception):
    def __init__(self, first: dict[str, Any] | None) -> None:
        if first is None:
            super().__init__("the enclave exited before it was ready")
        else:
            detail = first.get("message") or first.get("event")
            super().__init__(f"the enclave did not report ready: {str(detail)[:200]}")


async def _discard(standby: StandbyEnclave | None, folder: Path) -> None:
    if standby is not None:
        await standby.discard()
    else:
        shutil.rmtree(folder, ignore_errors=True)
