"""Enclave images: ``golem-graphene build SPEC`` turns a task spec into what a runner launches.

An image folder holds what :mod:`golem_graphene.host.hermetic` plans from the spec's container
image (``agent``, ``workload.json``, ``rootfs.json``), and:

- ``rootfs``: a link to the image's flattened root in an :class:`ImageStore` (the provider's
  store, or the user's cache for ``golem-graphene build``);
- ``task.toml``: the spec (not measured: ``workload.json`` carries what runs);
- ``agent.manifest``: the Gramine manifest with every trusted file listed and measured;
- ``sim.sig``: the simulated SIGSTRUCT (MRENCLAVE, MRSIGNER, ISVPRODID, ISVSVN, attributes,
  RSA-3072 signature); on a Gramine host also ``agent.manifest.sgx`` and ``agent.sig``;
- ``image.json``: the image digest and the expected measurement for each runner.

The ``sim`` MRENCLAVE is SHA-256("golem-graphene/sim/mrenclave/v1" NUL || canonical expanded
manifest) (docs/design.md section 3); MRSIGNER is SHA-256 of the signer's RSA-3072 modulus in
little-endian, as SGX defines it. The ``gramine-sgx`` MRENCLAVE is read from the SIGSTRUCT that
``gramine-sgx-sign`` writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

import golem_graphene
from golem_graphene.errors import ConfigError, RunnerError
from golem_graphene.gramine.manifest import Manifest
from golem_graphene.gramine.sigstruct import Sigstruct
from golem_graphene.host.build_cache import find_build, keep_build
from golem_graphene.host.hermetic import (
    AGENT_NAME,
    IMAGE_LINK,
    ROOTFS_LINK,
    SIM_MRENCLAVE_TAG,
    plan_enclave,
    resolve_reference,
    shipped_agent,
    sim_mrenclave,
)
from golem_graphene.host.user_paths import (
    default_image_store_folder,
    default_signing_key_path,
    spec_file_of,
)
from golem_graphene.images import ImageStore, RuntimeConfig, StoredRoot, open_image
from golem_graphene.protocol.spec import TaskSpec, spec_digest

__all__ = [
    "IMAGE_FORMAT",
    "MANIFEST_NAME",
    "SIM_MRENCLAVE_TAG",
    "EnclaveImage",
    "SimSignature",
    "build_image",
    "default_image_store",
    "default_signing_key_path",
    "load_or_create_signing_key",
    "mrsigner_of",
    "shipped_agent",
    "sim_mrenclave",
    "stored_image",
]

IMAGE_FORMAT = 2
MANIFEST_NAME = "agent.manifest"


def mrsigner_of(key: rsa.RSAPublicKey) -> bytes:
    """SHA-256 of the 384-byte little-endian modulus (SGX's MRSIGNER)."""
    return hashlib.sha256(key.public_numbers().n.to_bytes(384, "little")).digest()


def load_or_create_signing_key(path: Path) -> rsa.RSAPrivateKey:
    """The enclave signing key (RSA-3072, e = 3, as SGX requires), created 0600 on first use."""
    if path.exists():
        try:
            # The RSA key check costs ~170 ms per build; this is the user's own key, which we
            # created, and a broken one only makes signatures that no one accepts.
            key = serialization.load_pem_private_key(
                path.read_bytes(), None, unsafe_skip_rsa_key_validation=True
            )
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
    """A built image folder; load one with :meth:`load`.

    ``_manifest`` None: read on first use (an image copied from the build cache, whose
    manifest, thousands of trusted files, a runner may never need in this process).
    """

    directory: Path
    info: dict[str, Any]
    _manifest: Manifest | None
    spec: TaskSpec

    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            object.__setattr__(self, "_manifest", _read_manifest(self.directory))
        assert self._manifest is not None
        return self._manifest

    @classmethod
    def load(cls, directory: Path) -> EnclaveImage:
        """Read ``image.json``, the manifest and the spec; raises :class:`RunnerError`."""
        directory = Path(directory)
        try:
            info = json.loads((directory / "image.json").read_text())
        except (OSError, ValueError) as exc:
            raise RunnerError(f"{directory} is not a golem-graphene enclave image: {exc}") from exc
        manifest = _read_manifest(directory)
        if info.get("format") != IMAGE_FORMAT:
            raise RunnerError(
                "unsupported image format (built by another version: build it again)",
                expected=IMAGE_FORMAT,
                found=info.get("format"),
            )
        root = directory / ROOTFS_LINK
        if root.is_symlink() and not root.is_dir():
            raise RunnerError(
                f"the root of {directory}'s container image is no longer in the image store "
                "(reclaimed?): build the image again"
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


def _read_manifest(directory: Path) -> Manifest:
    try:
        return Manifest.from_path(directory / MANIFEST_NAME)
    except (OSError, ValueError) as exc:
        raise RunnerError(f"{directory} is not a golem-graphene enclave image: {exc}") from exc


def default_image_store() -> ImageStore:
    """The user's store of flattened image roots: ``$XDG_CACHE_HOME/golem-graphene/images``."""
    return ImageStore(default_image_store_folder())


def stored_image(
    spec: TaskSpec, spec_dir: Path, store: ImageStore
) -> tuple[StoredRoot, RuntimeConfig]:
    """The flattened root of the spec's (digest-pinned) image and its config's runtime fields.

    Opening the image checks its documents against the pinned digest; its layers are read only
    when the store has no root of that digest yet. Raises the :class:`ImageError` family.
    """
    reference = resolve_reference(spec.enclave.reference(), spec_dir)
    with open_image(reference) as source:
        return store.root(source), source.runtime


def build_image(
    spec_path: Path,
    out_dir: Path,
    *,
    key_path: Path | None = None,
    store: ImageStore | None = None,
    log_level: str = "error",
    force: bool = False,
    reuse: bool = True,
) -> EnclaveImage:
    """Build the enclave image of the spec at ``spec_path`` into ``out_dir``.

    The spec's container image is flattened into ``store`` (the user's cache by default) once
    per digest; the image folder links to that root. With ``reuse``, a folder built before from
    the same inputs is copied from the store (:mod:`golem_graphene.host.build_cache`), and a new
    one kept there. Raises :class:`ConfigError` for a bad spec or an existing output without
    ``force``, the :class:`ImageError` family for a bad image, and
    :class:`ManifestError`/:class:`RunnerError` when the manifest cannot be rendered.
    """
    spec_file = spec_file_of(Path(spec_path))
    # Absolute: the image's links must not dangle for a relative ``-o``.
    out_dir = Path(out_dir).absolute()
    if out_dir.exists() and not force:
        raise ConfigError(f"{out_dir} exists; pass --force to replace it")
    key_path = key_path or default_signing_key_path()
    store = store or default_image_store()
    if reuse and (cached := find_build(store, spec_file, key_path, log_level)) is not None:
        try:
            info = cached.install(out_dir)
            return EnclaveImage(out_dir, info, None, TaskSpec.from_path(out_dir / "task.toml"))
        except OSError:
            pass  # a damaged entry: build again
    spec = TaskSpec.from_path(spec_file)
    key = load_or_create_signing_key(key_path)
    stored, runtime = stored_image(spec, spec_file.parent, store)
    plan = plan_enclave(spec, runtime, stored.index(), stored.path, log_level=log_level)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        image = work / "image"
        image.mkdir()
        for name, data in plan.files.items():
            (image / name).write_bytes(data)
        (image / AGENT_NAME).chmod(0o755)
        shutil.copyfile(spec_file, image / "task.toml")
        (image / ROOTFS_LINK).symlink_to(stored.path.resolve())
        manifest = plan.manifest
        (image / MANIFEST_NAME).write_text(manifest.to_toml())
        mrenclave = plan.sim_mrenclave
        sim_sig = SimSignature.sign(key, mrenclave, manifest)
        (image / "sim.sig").write_text(sim_sig.to_json())
        sgx = _gramine_sign(image, work, key_path)
        info = {
            "format": IMAGE_FORMAT,
            "spec": spec.name,
            "spec_sha256": spec_digest(spec_file),
            "image": spec.enclave.image,
            "image_digest": stored.digest,
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
    if reuse:
        reference = resolve_reference(spec.enclave.reference(), spec_file.parent)
        opened = Path(reference.path)  # what changes when the image is replaced:
        source = opened / "index.json" if reference.transport == "oci" else opened
        keep_build(
            store,
            out_dir,
            spec_file=spec_file,
            key_path=key_path,
            log_level=log_level,
            source=source,
        )
    # What was just written, without parsing it back (thousands of trusted files).
    return EnclaveImage(out_dir, info, manifest, spec)


def _gramine_sign(image: Path, work: Path, key_path: Path) -> Sigstruct | None:
    """On a Gramine host, sign with ``gramine-sgx-sign`` and read MRENCLAVE from the SIGSTRUCT."""
    tool = shutil.which("gramine-sgx-sign")
    if tool is None:
        return None
    launch = work / "launch"
    launch.mkdir()
    (launch / IMAGE_LINK).symlink_to(image)
    (launch / ROOTFS_LINK).symlink_to((image / ROOTFS_LINK).resolve())
    (launch / "io").mkdir()
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
