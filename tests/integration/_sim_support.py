"""Shared by the sim-runner integration tests: whether bubblewrap can sandbox here, ldd, and
hand-built sim images (:class:`SimImages`)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from _test_images import libraries
from cryptography.hazmat.primitives.asymmetric import rsa

from golem_graphene.gramine.manifest import Manifest
from golem_graphene.gramine.trusted_files import expand_trusted_files
from golem_graphene.host.image import IMAGE_FORMAT, EnclaveImage, SimSignature, sim_mrenclave
from golem_graphene.host.runners import SimRunner
from golem_graphene.host.sandbox import bwrap_available


def sandbox_problem() -> str | None:
    """Why bubblewrap sandboxes cannot run here (not installed, no user namespaces), or None."""
    bwrap = bwrap_available()
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed"
    cmd = [bwrap, "--ro-bind", "/", "/", "--unshare-user", "--unshare-pid", "--unshare-net"]
    try:
        done = subprocess.run([*cmd, "--", "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap cannot run: {exc}"
    if done.returncode != 0:
        return f"bubblewrap cannot create namespaces here: {done.stderr.decode().strip()}"
    return None


def ldd(programs: list[str]) -> list[str]:
    """The shared libraries (and loader) the given programs load."""
    return libraries(programs)


@dataclass
class SimImages:
    """Builds small sim images by hand (no agent): a manifest, its simulated signature and
    the image files the runner reads, in numbered folders under ``root``."""

    root: Path
    key: rsa.RSAPrivateKey
    runner: SimRunner
    count: int = 0

    def make(
        self,
        argv: list[str],
        programs: list[str],
        *,
        app: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
        trusted: tuple[str, ...] = (),
        mounts: tuple[str, ...] = (),
        remote_attestation: str = "dcap",
        network: bool = False,
        wall_seconds: float = 30,
    ) -> EnclaveImage:
        """An image running ``argv`` with ``programs`` (and their libraries) and ``trusted``
        trusted; ``app`` files go into the image's ``app/`` folder and are trusted too."""
        self.count += 1
        img = self.root / f"image-{self.count}"
        (img / "app").mkdir(parents=True)
        for name, text in (app or {}).items():
            (img / "app" / name).write_text(text)
        files = [*programs, *ldd(programs), *trusted]
        tops = sorted({"/" + Path(p).parts[1] for p in files})
        environment = {"PATH": "/usr/bin:/bin", **(env or {})}
        text = "\n".join(
            [
                f"libos.entrypoint = {json.dumps(argv[0])}",
                f"loader.argv = {json.dumps(argv)}",
                *(f"loader.env.{k} = {json.dumps(v)}" for k, v in environment.items()),
                "fs.mounts = [",
                '  { path = "/image", uri = "file:image" },',
                '  { path = "/untrusted", uri = "file:io" },',
                '  { path = "/tmp", type = "tmpfs" },',
                *(f'  {{ path = "{top}", uri = "file:{top}" }},' for top in tops),
                *mounts,
                "]",
                f"sgx.remote_attestation = {json.dumps(remote_attestation)}",
                "sgx.trusted_files = "
                + json.dumps(
                    [f"file:{p}" for p in files] + [f"file:image/app/{n}" for n in app or {}]
                ),
                'sgx.allowed_files = ["file:io/"]',
            ]
        )
        launch = self.root / f"build-launch-{self.count}"
        launch.mkdir()
        (launch / "image").symlink_to(img)
        manifest = expand_trusted_files(
            Manifest.from_toml(text), launch, hash_loader_entrypoint=False
        )
        (img / "agent.manifest").write_text(manifest.to_toml())
        measured = sim_mrenclave(manifest)
        signature = SimSignature.sign(self.key, measured, manifest)
        (img / "sim.sig").write_text(signature.to_json())
        (img / "task.toml").write_text(
            f'name = "t{self.count}"\nnetwork = {str(network).lower()}\n'
            # The runner reads only the limits and network of the spec; its image is not
            # opened (these images are hand-made manifests of host files).
            f'[enclave]\nimage = "oci-archive:none.tar@sha256:{"0" * 64}"\n'
            f'[outputs]\nfiles = ["out"]\n[limits]\nwall_seconds = {wall_seconds}\n'
        )
        info = {
            "format": IMAGE_FORMAT,
            "mrenclave": {"sim": measured.hex(), "gramine-sgx": None},
            "mrsigner": signature.mrsigner.hex(),
        }
        (img / "image.json").write_text(json.dumps(info))
        return EnclaveImage.load(img)

    async def run(self, image: EnclaveImage, name: str) -> tuple[int, Path, str]:
        """Launch ``image`` in a fresh launch folder; returns (status, io folder, stderr)."""
        launch = self.root / name
        stderr = self.root / f"{name}.stderr"
        process = await self.runner.launch(image, launch, stderr_path=stderr)
        code = await asyncio.wait_for(process.wait(), timeout=60)
        return code, launch / "io", stderr.read_text()
