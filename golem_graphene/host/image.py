"""Enclave images: ``golem-graphene build SPEC`` turns a task spec into what a runner launches.

An image folder holds:

- ``app/``: the spec's app files; ``task.toml``: the spec; ``workload.json``: what the agent runs
  (``docs/agent-protocol.md`` section 5);
- ``agent``: the native in-enclave agent, one static executable shipped inside this package
  (built reproducibly from ``native/agent/``, so every provider and requestor of one version
  carries and measures the same bytes);
- ``agent.manifest``: the Gramine manifest rendered from ``native/agent.manifest.template`` with
  every trusted file expanded and measured;
- ``sim.sig``: the simulated SIGSTRUCT (MRENCLAVE, MRSIGNER, ISVPRODID, ISVSVN, attributes,
  RSA-3072 signature); on a Gramine host also ``agent.manifest.sgx`` and ``agent.sig``;
- ``image.json``: the expected measurement for each runner.

The ``sim`` MRENCLAVE is SHA-256("golem-graphene/sim/mrenclave/v1" NUL || canonical expanded
manifest) (DESIGN.md section 3); MRSIGNER is SHA-256 of the signer's RSA-3072 modulus in
little-endian, as SGX defines it. The ``gramine-sgx`` MRENCLAVE is read from the SIGSTRUCT that
``gramine-sgx-sign`` writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

import golem_graphene
from golem_graphene.errors import ConfigError, RunnerError
from golem_graphene.gramine.manifest import Manifest, canonical_manifest_bytes
from golem_graphene.gramine.sigstruct import Sigstruct
from golem_graphene.gramine.template import render_manifest
from golem_graphene.gramine.trusted_files import expand_trusted_files
from golem_graphene.protocol.spec import TaskSpec, spec_digest

__all__ = [
    "IMAGE_FORMAT",
    "SIM_MRENCLAVE_TAG",
    "EnclaveImage",
    "SimSignature",
    "build_image",
    "default_signing_key_path",
    "load_or_create_signing_key",
    "mrsigner_of",
    "sim_mrenclave",
]

IMAGE_FORMAT = 1
SIM_MRENCLAVE_TAG = b"golem-graphene/sim/mrenclave/v1\0"
MANIFEST_NAME = "agent.manifest"
AGENT_BINARY = "golem-graphene-agent"
AGENT_NAME = "agent"
"""The native agent's file name in the image (``/image/agent`` inside the enclave)."""
_STDLIB_SKIP = frozenset(
    {
        "site-packages",
        "dist-packages",
        "test",
        "tests",
        "idlelib",
        "tkinter",
        "turtledemo",
        "ensurepip",
        "lib2to3",
        "pydoc_data",
        "__pycache__",
    }
)


def sim_mrenclave(manifest: Manifest) -> bytes:
    """The simulated MRENCLAVE of an expanded manifest."""
    return hashlib.sha256(SIM_MRENCLAVE_TAG + canonical_manifest_bytes(manifest)).digest()


def mrsigner_of(key: rsa.RSAPublicKey) -> bytes:
    """SHA-256 of the 384-byte little-endian modulus (SGX's MRSIGNER)."""
    return hashlib.sha256(key.public_numbers().n.to_bytes(384, "little")).digest()


def default_signing_key_path() -> Path:
    """``$XDG_CONFIG_HOME/golem-graphene/enclave-key.pem`` (like Gramine's default key path)."""
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "golem-graphene" / "enclave-key.pem"


def load_or_create_signing_key(path: Path) -> rsa.RSAPrivateKey:
    """The enclave signing key (RSA-3072, e = 3, as SGX requires), created 0600 on first use."""
    if path.exists():
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), None)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"cannot read the enclave signing key {path}: {exc}") from exc
        if (
            not isinstance(key, rsa.RSAPrivateKey)
            or key.key_size != 3072
            or key.public_key().public_numbers().e != 3
        ):
            raise ConfigError(
                "the enclave signing key must be RSA-3072 with exponent 3", found=str(path)
            )
        return key
    key = rsa.generate_private_key(public_exponent=3, key_size=3072)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return key


@dataclass(frozen=True)
class SimSignature:
    """The simulator's SIGSTRUCT: the identity the simulated CPU checks before it runs an image."""

    mrenclave: bytes
    mrsigner: bytes
    isvprodid: int
    isvsvn: int
    debug: bool
    modulus: bytes
    signature: bytes

    def signed_bytes(self) -> bytes:
        """What the RSA signature covers."""
        return json.dumps(
            {
                "mrenclave": self.mrenclave.hex(),
                "mrsigner": self.mrsigner.hex(),
                "isvprodid": self.isvprodid,
                "isvsvn": self.isvsvn,
                "debug": self.debug,
            },
            sort_keys=True,
        ).encode()

    def verify(self) -> None:
        """Check the signature and that MRSIGNER is the signer's; raises :class:`RunnerError`."""
        public = rsa.RSAPublicNumbers(3, int.from_bytes(self.modulus, "little")).public_key()
        if mrsigner_of(public) != self.mrsigner:
            raise RunnerError("sim.sig: MRSIGNER is not the hash of the signing key")
        try:
            public.verify(self.signature, self.signed_bytes(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature as exc:
            raise RunnerError("sim.sig: the enclave signature does not verify") from exc

    def to_json(self) -> str:
        return json.dumps(
            {
                "mrenclave": self.mrenclave.hex(),
                "mrsigner": self.mrsigner.hex(),
                "isvprodid": self.isvprodid,
                "isvsvn": self.isvsvn,
                "debug": self.debug,
                "modulus": self.modulus.hex(),
                "signature": self.signature.hex(),
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> SimSignature:
        try:
            obj = json.loads(text)
            return cls(
                bytes.fromhex(obj["mrenclave"]),
                bytes.fromhex(obj["mrsigner"]),
                int(obj["isvprodid"]),
                int(obj["isvsvn"]),
                bool(obj["debug"]),
                bytes.fromhex(obj["modulus"]),
                bytes.fromhex(obj["signature"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise RunnerError(f"sim.sig is malformed: {exc}") from exc

    @classmethod
    def sign(cls, key: rsa.RSAPrivateKey, mrenclave: bytes, manifest: Manifest) -> SimSignature:
        unsigned = cls(
            mrenclave,
            mrsigner_of(key.public_key()),
            manifest.sgx.isvprodid,
            manifest.sgx.isvsvn,
            manifest.sgx.debug,
            key.public_key().public_numbers().n.to_bytes(384, "little"),
            b"",
        )
        sig = key.sign(unsigned.signed_bytes(), padding.PKCS1v15(), hashes.SHA256())
        return cls(**{**unsigned.__dict__, "signature": sig})


@dataclass(frozen=True)
class EnclaveImage:
    """A built image folder; load one with :meth:`load`."""

    directory: Path
    info: dict[str, Any]
    manifest: Manifest
    spec: TaskSpec

    @classmethod
    def load(cls, directory: Path) -> EnclaveImage:
        """Read ``image.json``, the manifest and the spec; raises :class:`RunnerError`."""
        directory = Path(directory)
        try:
            info = json.loads((directory / "image.json").read_text())
            manifest = Manifest.from_path(directory / MANIFEST_NAME)
        except (OSError, ValueError) as exc:
            raise RunnerError(f"{directory} is not a golem-graphene enclave image: {exc}") from exc
        if info.get("format") != IMAGE_FORMAT:
            raise RunnerError(
                "unsupported image format", expected=IMAGE_FORMAT, found=info.get("format")
            )
        return cls(directory, info, manifest, TaskSpec.from_path(directory / "task.toml"))

    def measurement(self, runner: str) -> bytes | None:
        """The expected MRENCLAVE under ``runner`` (None where it is not known here)."""
        value = self.info.get("mrenclave", {}).get(runner)
        return bytes.fromhex(value) if value else None

    @property
    def mrsigner(self) -> bytes:
        return bytes.fromhex(self.info["mrsigner"])

    def sim_signature(self) -> SimSignature:
        return SimSignature.from_json((self.directory / "sim.sig").read_text())


def build_image(
    spec_path: Path,
    out_dir: Path,
    *,
    key_path: Path | None = None,
    log_level: str = "error",
    force: bool = False,
) -> EnclaveImage:
    """Build the enclave image of the spec at ``spec_path`` into ``out_dir``.

    Raises :class:`ConfigError` for a bad spec or an existing output without ``force``, and
    :class:`ManifestError`/:class:`RunnerError` when the manifest cannot be rendered or measured.
    """
    spec_path = Path(spec_path)
    spec_file = spec_path / "task.toml" if spec_path.is_dir() else spec_path
    spec = TaskSpec.from_path(spec_file)
    # Absolute: the launch folder's ``image`` link (``_render``) must not dangle for a relative
    # ``-o``, and nothing below depends on the working folder.
    out_dir = Path(out_dir).absolute()
    if out_dir.exists() and not force:
        raise ConfigError(f"{out_dir} exists; pass --force to replace it")
    key = load_or_create_signing_key(key_path or default_signing_key_path())
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        image = work / "image"
        image.mkdir()
        _copy_app(spec, spec_file.parent, image)
        shutil.copyfile(spec_file, image / "task.toml")
        _write_workload(spec, image)
        _copy_agent(image / AGENT_NAME)
        manifest = _render(spec, image, log_level, work)
        (image / MANIFEST_NAME).write_text(manifest.to_toml())
        mrenclave = sim_mrenclave(manifest)
        sim_sig = SimSignature.sign(key, mrenclave, manifest)
        (image / "sim.sig").write_text(sim_sig.to_json())
        sgx = _gramine_sign(image, work, key_path or default_signing_key_path())
        info = {
            "format": IMAGE_FORMAT,
            "spec": spec.name,
            "spec_sha256": spec_digest(spec_file),
            "mrenclave": {
                "sim": mrenclave.hex(),
                "gramine-sgx": sgx.mrenclave.hex() if sgx else None,
            },
            "mrsigner": sim_sig.mrsigner.hex(),
            "isvprodid": manifest.sgx.isvprodid,
            "isvsvn": manifest.sgx.isvsvn,
            "debug": manifest.sgx.debug,
            "trusted_files": len(manifest.sgx.trusted_files),
            "built": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "golem_graphene": golem_graphene.__version__,
        }
        (image / "image.json").write_text(json.dumps(info, indent=2) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(image, out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return EnclaveImage.load(out_dir)


def _copy_app(spec: TaskSpec, spec_dir: Path, image: Path) -> None:
    app = image / "app"
    app.mkdir()
    for rel in spec.enclave.app_files:
        src = spec_dir / rel
        dst = app / rel
        if src.is_dir():
            shutil.copytree(
                src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        elif src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        else:
            raise ConfigError(f"enclave.app_files: {rel!r} does not exist beside the spec")
    if spec.enclave.runtime == "python3" and not (app / spec.enclave.entrypoint).is_file():
        raise ConfigError(
            "enclave.entrypoint must be one of the app files for the python3 runtime",
            found=spec.enclave.entrypoint,
        )


def _write_workload(spec: TaskSpec, image: Path) -> None:
    if spec.enclave.runtime == "python3":
        argv = [sys_python(), "-S", "-s", "-B", f"/image/app/{spec.enclave.entrypoint}"]
    else:
        if not spec.enclave.entrypoint.startswith("/"):
            raise ConfigError("enclave.entrypoint must be an absolute path for the native runtime")
        argv = [spec.enclave.entrypoint]
    limits = spec.limits
    # The agent's workload description (docs/agent-protocol.md section 5): integers only.
    workload = {
        "format": 1,
        "argv": argv,
        "args": list(spec.enclave.args),
        "env": spec.enclave.env,
        "inputs": [
            {"name": i.name, "max_size": i.max_size, "required": i.required} for i in spec.inputs
        ],
        "outputs": list(spec.outputs.files),
        "limits": {
            "wall_ms": round(limits.wall_seconds * 1000),
            "cpu_seconds": limits.cpu_seconds,
            "memory": limits.memory,
            "output_size": limits.output_size,
            "max_outputs": limits.max_outputs,
        },
    }

    (image / "workload.json").write_text(json.dumps(workload, indent=2, sort_keys=True) + "\n")


def sys_python() -> str:
    """The real interpreter path (symlinks resolved), as the enclave sees it."""
    return str(Path(sys.executable).resolve())


def shipped_agent() -> bytes:
    """The native agent's bytes, as this package ships them."""
    try:
        return resources.files("golem_graphene.host").joinpath("agent", AGENT_BINARY).read_bytes()
    except OSError as exc:
        raise RunnerError(
            "this installation of golem-graphene lacks its in-enclave agent "
            f"(golem_graphene/host/agent/{AGENT_BINARY}); reinstall it"
        ) from exc


def _copy_agent(target: Path) -> None:
    target.write_bytes(shipped_agent())
    target.chmod(0o755)


def _ldd(paths: list[Path]) -> set[Path]:
    """Shared libraries the given ELF files load (with the dynamic loader), via ``ldd``."""
    libs: set[Path] = set()
    for path in paths:
        try:
            out = subprocess.run(
                ["ldd", str(path)], capture_output=True, text=True, timeout=30
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        for line in out.splitlines():
            parts = line.split()
            if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
                libs.add(Path(parts[2]))
            elif parts and parts[0].startswith("/"):
                libs.add(Path(parts[0]))
    return libs


def _system_trusted_files(spec: TaskSpec) -> list[str]:
    """The workload's files from this host: the interpreter and its standard library for a
    ``python3`` workload, the spec's native program and trusted files, and every library they
    load. (The agent needs none: it is static.)"""
    entries: list[str] = []
    elf: list[Path] = []
    if spec.enclave.runtime == "python3":
        python = Path(sys_python())
        stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
        entries.append(str(python))
        elf.append(python)
        for child in sorted(stdlib.iterdir()):
            if child.name in _STDLIB_SKIP or child.name.startswith("config-"):
                continue
            entries.append(f"{child}/" if child.is_dir() else str(child))
            if child.name == "lib-dynload":
                elf += sorted(child.glob("*.so"))
    native = [spec.enclave.entrypoint] if spec.enclave.runtime == "native" else []
    for item in [*native, *spec.enclave.trusted_files]:
        path = Path(item)
        if not path.exists():
            raise ConfigError("a trusted file of the spec does not exist on this host", found=item)
        entries.append(f"{item}/" if path.is_dir() else item)
        if path.is_file():
            elf.append(path)
    entries += sorted(str(lib) for lib in _ldd(elf))
    return list(dict.fromkeys(entries))


def _render(spec: TaskSpec, image: Path, log_level: str, work: Path) -> Manifest:
    template = resources.files("golem_graphene.host").joinpath(
        "templates", "agent.manifest.template"
    )
    trusted = _system_trusted_files(spec)
    mounts = sorted({"/" + Path(p.rstrip("/")).parts[1] for p in trusted})
    variables = {
        "system_mounts": mounts,
        "trusted_system_files": trusted,
        "enclave_size": f"{spec.enclave.enclave_size // (1 << 20)}M",
        "max_threads": spec.enclave.max_threads,
        "debug": spec.enclave.debug,
        "isvprodid": spec.enclave.isvprodid,
        "isvsvn": spec.enclave.isvsvn,
        "log_level": log_level,
    }
    manifest = render_manifest(
        template.read_text(), variables, allow_subprocess=False, name="agent.manifest.template"
    )
    launch = work / "launch"
    launch.mkdir()
    (launch / "image").symlink_to(image)
    (launch / "io").mkdir()
    return expand_trusted_files(manifest, launch, hash_loader_entrypoint=False)


def _gramine_sign(image: Path, work: Path, key_path: Path) -> Sigstruct | None:
    """On a Gramine host, sign with ``gramine-sgx-sign`` and read MRENCLAVE from the SIGSTRUCT."""
    tool = shutil.which("gramine-sgx-sign")
    if tool is None:
        return None
    launch = work / "launch"
    cmd = [
        tool,
        "--manifest",
        str(image / MANIFEST_NAME),
        "--output",
        str(image / f"{MANIFEST_NAME}.sgx"),
        "--key",
        str(key_path),
    ]
    result = subprocess.run(cmd, cwd=launch, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RunnerError(f"gramine-sgx-sign failed: {result.stderr.strip()[-2000:]}")
    return Sigstruct.from_bytes((image / "agent.sig").read_bytes())
