"""Helpers of the end-to-end tests (fixtures are in ``conftest.py``; tests import this module).

Images are built once per session (:class:`ImageCache`) and linked into each provider's data
directory, where the provider finds them built. :func:`run_plaintext` is the reference run of a
workload outside any enclave, :func:`golem_graphene_cli` runs the CLI in a child interpreter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _test_images import write_shell_spec

from golem_graphene._internal.staging import STAGING_PREFIX
from golem_graphene.host.hermetic import workload_json
from golem_graphene.host.image import EnclaveImage, build_image, stored_image
from golem_graphene.host.runners import SimRunner
from golem_graphene.images import ImageStore
from golem_graphene.protocol.spec import TaskSpec, spec_digest
from golem_graphene.provider.server import ProviderServer
from golem_graphene.requestor.channel import Channel
from golem_graphene.requestor.client import Requestor, RequestorPolicy
from golem_graphene.sealing.keys import X25519Identity

REPO_ROOT = Path(__file__).resolve().parents[2]
TASK_SPECS = REPO_ROOT / "task_specs"
REQUESTOR_TOKEN = "integration-requestor-token-0123456789abcdef"
OTHER_TOKEN = "integration-other-requestor-token-0123456789"

WORKLOAD_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
"""The environment the agent gives every workload (``docs/agent-protocol.md`` section 6)."""

SHELL = "shell"
"""Shell spec (the requestor's ``args`` are the script) with small limits: 3 s of wall clock
for the workload, 64 KiB of outputs."""
SHELL_DEBUG = "shell-debug"
"""Shell spec whose enclave is a debug enclave (``debug = true``)."""

_SHELL_SPEC = """\
name = "{name}"
description = "A shell for tests: the requestor's args are the script (sh -c ...)"

[enclave]
image = "{{image}}"
args = ["-c", "true"]
enclave_size = "256M"
max_threads = 4
debug = {debug}

[[inputs]]
name = "x"
max_size = "{max_input}"
required = false

[[inputs]]
name = "y"
max_size = "{max_input}"
required = false

[outputs]
files = ["*"]

[limits]
wall_seconds = {wall}
memory = "{memory}"
output_size = "{output_size}"
"""


def shell_spec_text(
    name: str,
    *,
    wall: float = 3,
    output_size: str = "64K",
    debug: bool = False,
    max_input: str = "2G",
    memory: str = "256M",
) -> str:
    """The TOML of a ``/bin/sh`` spec (the shell image, ``{image}`` left to fill by
    :func:`write_shell_spec`) with two optional inputs."""
    return _SHELL_SPEC.format(
        name=name,
        debug=str(debug).lower(),
        wall=wall,
        output_size=output_size,
        max_input=max_input,
        memory=memory,
    )


def write_test_specs(root: Path) -> None:
    """Offer the repository's specs (linked: same bytes, same digests) and the shell specs."""
    for spec_dir in real_spec_dirs():
        (root / spec_dir.name).symlink_to(spec_dir)
    # The debug spec also gives the workload more memory than the enclave has (1G > 256M):
    # the agent must cap the workload's limit at the enclave's, not fail to start it.
    for name, options in ((SHELL, {}), (SHELL_DEBUG, {"debug": True, "memory": "1G"})):
        write_shell_spec(root / name, shell_spec_text(name, **options))


def real_spec_dirs() -> list[Path]:
    """Every spec folder of the repository's ``task_specs``."""
    return sorted(p.parent for p in TASK_SPECS.glob("*/task.toml"))


# --- images -------------------------------------------------------------------------------------


class ImageCache:
    """Enclave images built once per session, keyed as the provider keys them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.key_path = root / "enclave-key.pem"
        self.store = ImageStore(root / "image-store")
        self._images: dict[str, EnclaveImage] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(spec_dir: Path) -> str:
        """``<spec name>-<first 16 hex of the spec digest>``, as ``TaskEngine.image_for``."""
        return f"{TaskSpec.from_path(spec_dir).name}-{spec_digest(spec_dir)[:16]}"

    def get(self, spec_dir: Path) -> EnclaveImage:
        """The built image of ``spec_dir`` (built on first use)."""
        key = self.key(spec_dir)
        with self._lock:
            if key not in self._images:
                self._images[key] = build_image(
                    spec_dir,
                    self.root / key,
                    key_path=self.key_path,
                    store=self.store,
                    force=True,
                )
            return self._images[key]

    def measurement(self, spec_dir: Path) -> str:
        """The image's expected ``sim`` MRENCLAVE in hex."""
        value = self.get(spec_dir).measurement("sim")
        assert value is not None
        return value.hex()

    def install(self, data_dir: Path, spec_dir: Path) -> None:
        """Make a provider with ``data_dir`` find the image of ``spec_dir`` already built."""
        image = self.get(spec_dir)
        link = data_dir / "images" / self.key(spec_dir)
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(image.directory.resolve())


def bwrap_problem() -> str | None:
    """None when bwrap can create the sandbox's namespaces here, else why not."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed"
    cmd = [bwrap, "--unshare-user", "--unshare-pid", "--unshare-net", "--die-with-parent"]
    cmd += ["--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "/bin/true"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    return None if result.returncode == 0 else f"bwrap cannot sandbox here: {result.stderr}"


# --- requestor and provider ---------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """A requestor identity and the age identity file holding it."""

    key: X25519Identity
    path: Path


def write_identity(path: Path) -> Identity:
    """A fresh identity written (0600) as an age identity file."""
    key = X25519Identity.generate()
    path.write_text(f"# public key: {key.recipient().to_string()}\n{key.to_string()}\n")
    path.chmod(0o600)
    return Identity(key, path)


@dataclass
class Provider:
    """A running in-process provider and what a test needs around it."""

    server: ProviderServer
    runner: SimRunner
    images: ImageCache
    specs_dir: Path
    token: str | None

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def data_dir(self) -> Path:
        return self.server.config.data_dir

    @property
    def tasks_dir(self) -> Path:
        return self.data_dir / "tasks"

    @property
    def root_fingerprint(self) -> str:
        return self.runner.platform.root_fingerprint

    def spec(self, name: str) -> Path:
        """The folder of the offered spec ``name``, its image installed."""
        path = self.specs_dir / name
        self.images.install(self.data_dir, path)
        return path

    def policy(self, spec_dir: Path, **overrides: Any) -> RequestorPolicy:
        """Trust this provider's simulation root and expect the spec's own measurement."""
        self.images.install(self.data_dir, spec_dir)
        options: dict[str, Any] = {
            "trusted_simulation_roots": (self.root_fingerprint,),
            "expected_mrenclave": (self.images.measurement(spec_dir),),
        }
        options.update(overrides)
        return RequestorPolicy(**options)

    def requestor(
        self,
        identity: Identity,
        spec_dir: Path,
        *,
        channel: Channel | None = None,
        **policy: Any,
    ) -> Requestor:
        """A requestor for ``spec_dir`` on this provider (over ``channel`` when given)."""
        return Requestor(
            channel if channel is not None else self.url,
            identity=identity.key,
            token=self.token,
            policy=self.policy(spec_dir, **policy),
        )

    def task_dir(self, task_id: str) -> Path:
        return self.tasks_dir / task_id

    def leftovers(self) -> list[Path]:
        """Launch folders and partial uploads still on disk (none once tasks ended)."""
        while True:
            try:
                return sorted(self.tasks_dir.glob("*/launch")) + sorted(
                    self.tasks_dir.rglob("*.part")
                )
            except FileNotFoundError:
                continue  # a folder went away while we walked it (the provider reclaiming)

    async def settled_leftovers(self, timeout: float = 15.0) -> list[Path]:
        """:meth:`leftovers` once the provider finished reclaiming (it does so right after it
        announces a task's end), or what is still there after ``timeout`` seconds."""
        await wait_until(lambda: not self.leftovers(), timeout)
        return self.leftovers()


async def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Poll ``condition`` (state outside this process: files, processes) until it holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


StartProvider = Callable[..., contextlib.AbstractAsyncContextManager[Provider]]
"""The ``start_provider`` fixture: ``async with start_provider(**options) as provider``."""


def staging_leftovers(out_dir: Path) -> list[Path]:
    """Temporary folders the requestor may have left beside ``out_dir``: its private staging
    folders (``.golem-graphene-staging-*``) and any ``.<name>.*``."""
    return sorted(out_dir.parent.glob(f".{out_dir.name}.*")) + sorted(
        out_dir.parent.glob(f"{STAGING_PREFIX}*")
    )


# --- reference runs and the CLI -----------------------------------------------------------------


def run_plaintext(
    spec_dir: Path,
    inputs: dict[str, Path],
    work: Path,
    args: list[str] | None = None,
) -> dict[str, bytes]:
    """Run the spec's workload outside any enclave, as the agent would; returns its outputs.

    The same program (from the same image root, bound as ``/`` in a plain bubblewrap sandbox, no
    agent), arguments, environment and layout (``inputs/``, ``outputs/``, ``/workspace`` as the
    working directory); the result maps each output file, ``stdout`` and ``stderr`` to its
    bytes.
    """
    spec = TaskSpec.from_path(spec_dir)
    (work / "inputs").mkdir(parents=True)
    (work / "outputs").mkdir()
    for name, path in inputs.items():
        shutil.copyfile(path, work / "inputs" / name)
    stored, runtime = stored_image(spec, spec_dir, ImageStore(work.parent / "plain-store"))
    workload = json.loads(workload_json(spec, runtime, stored.index()))
    bwrap = shutil.which("bwrap")
    assert bwrap is not None
    sandbox = [bwrap, "--ro-bind", str(stored.path), "/", "--proc", "/proc", "--dev", "/dev"]
    sandbox += ["--tmpfs", "/tmp", "--bind", str(work), "/workspace", "--chdir", "/workspace"]
    env = {**WORKLOAD_ENV, **workload["env"], "HOME": "/workspace"}
    sandbox += ["--clearenv", *[a for k, v in env.items() for a in ("--setenv", k, v)], "--"]
    result = subprocess.run(
        [*sandbox, *workload["argv"], *(args if args is not None else workload["args"])],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    outputs = {p.name: p.read_bytes() for p in (work / "outputs").iterdir() if p.is_file()}
    outputs["stdout"] = result.stdout
    outputs["stderr"] = result.stderr
    return outputs


def golem_graphene_cli(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``golem-graphene ARGS`` in a child interpreter; returns the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "golem_graphene", *(str(a) for a in args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=dict(os.environ),
    )


def processes_mentioning(marker: str) -> list[int]:
    """Pids of live (not zombie) processes whose command line contains ``marker``."""
    found = []
    needle = marker.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            status = (entry / "status").read_text()
        except OSError:
            continue
        if needle in cmdline and "\nState:\tZ" not in status:
            found.append(int(entry.name))
    return found
