"""``build_image`` on a host "with Gramine" (fake ``gramine-sgx-sign`` on PATH), and the checks
the ``sim`` runner makes on an image before it starts it (as EINIT would).

One real build (a shell spec over the test shell image, see tests/_test_images.py, flattened
into a store of its own) serves every test here.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _test_images import write_shell_spec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from golem_graphene.errors import RunnerError
from golem_graphene.gramine.sigstruct import Sigstruct
from golem_graphene.host.hermetic import ROOTFS_LINK
from golem_graphene.host.image import (
    EnclaveImage,
    SimSignature,
    _gramine_sign,
    build_image,
    load_or_create_signing_key,
    mrsigner_of,
    sim_mrenclave,
)
from golem_graphene.host.runners import SimRunner
from golem_graphene.images import ImageStore

REPO = Path(__file__).resolve().parents[3]
FAKES = REPO / "tests" / "fakes" / "gramine"
SPEC_TEXT = """\
name = "shell"

[enclave]
image = "{image}"
args = ["-c", "cat inputs/data.txt > outputs/out.txt"]
enclave_size = "256M"
max_threads = 4

[[inputs]]
name = "data.txt"

[outputs]
files = ["out.txt"]
"""


@dataclass
class Built:
    image: EnclaveImage
    key_path: Path
    calls: list[dict[str, Any]]


def fake_path(bin_dir: Path) -> str:
    shutil.copytree(FAKES, bin_dir, ignore=shutil.ignore_patterns("__pycache__"))
    for tool in ("gramine-sgx", "gramine-direct", "gramine-sgx-sign", "gramine-manifest"):
        (bin_dir / tool).chmod(0o755)
    return f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    root = tmp_path_factory.mktemp("build")
    key_path = root / "enclave-key.pem"
    load_or_create_signing_key(key_path)
    log = root / "calls.jsonl"
    spec = write_shell_spec(root / "spec", SPEC_TEXT)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", fake_path(root / "fake-bin"))
        mp.setenv("FAKE_GRAMINE_LOG", str(log))
        mp.delenv("FAKE_GRAMINE_MODE", raising=False)
        image = build_image(
            spec, root / "image", key_path=key_path, store=ImageStore(root / "store")
        )
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    yield Built(image, key_path, calls)


# --- the gramine-sgx measurement ---------------------------------------------------------------


def test_image_json_records_what_gramine_sgx_sign_measured(built: Built) -> None:
    (sign,) = [c for c in built.calls if c["tool"] == "gramine-sgx-sign"]
    assert built.image.info["mrenclave"]["gramine-sgx"] == sign["mrenclave"]
    assert built.image.measurement("gramine-sgx") == bytes.fromhex(sign["mrenclave"])
    # ... and it is what the SIGSTRUCT in the image says.
    sig = Sigstruct.from_bytes((built.image.directory / "agent.sig").read_bytes())
    assert sig.mrenclave.hex() == sign["mrenclave"]


def test_gramine_sgx_sign_gets_the_exact_command(built: Built) -> None:
    (sign,) = [c for c in built.calls if c["tool"] == "gramine-sgx-sign"]
    argv = sign["argv"]
    assert argv[0::2] == ["--manifest", "--output", "--key"]
    manifest, output, key = argv[1::2]
    assert manifest.endswith("/image/agent.manifest")
    assert output == manifest + ".sgx"
    assert key == str(built.key_path)
    # It runs in a launch folder, so relative URIs (file:image/...) resolve as at run time.
    assert Path(sign["cwd"]).name == "launch"
    assert sign["sigfile"] == manifest[: -len(".manifest")] + ".sig"


def test_sgx_signature_matches_the_image(built: Built) -> None:
    directory = built.image.directory
    sig = Sigstruct.from_bytes((directory / "agent.sig").read_bytes())
    key = load_or_create_signing_key(built.key_path)
    assert sig.mrsigner == mrsigner_of(key.public_key()) == built.image.mrsigner
    sgx = built.image.manifest.sgx
    assert (sig.isvprodid, sig.isvsvn, sig.debug) == (sgx.isvprodid, sgx.isvsvn, sgx.debug)
    assert sig.date == datetime.date.today().isoformat()
    assert (directory / "agent.manifest.sgx").read_bytes() == (
        directory / "agent.manifest"
    ).read_bytes()


def test_the_build_renders_manifests_itself(built: Built) -> None:
    # gramine-manifest is never needed: the measurement must not depend on the host's copy.
    assert [c["tool"] for c in built.calls] == ["gramine-sgx-sign"]


def test_sim_measurement_is_the_manifests(built: Built) -> None:
    image = built.image
    assert image.measurement("sim") == sim_mrenclave(image.manifest)
    assert image.info["mrsigner"] == image.sim_signature().mrsigner.hex()
    # The image folder's three files and every regular file of the image root.
    root_files = [
        p for p in (image.directory / ROOTFS_LINK).rglob("*") if p.is_file() and not p.is_symlink()
    ]
    assert image.info["trusted_files"] == len(image.manifest.sgx.trusted_files)
    assert len(image.manifest.sgx.trusted_files) == 3 + len(root_files) > 3
    assert image.manifest.is_expanded
    identity = SimRunner(image.directory.parent / "data").enclave_identity(image)
    assert identity.mrenclave == image.measurement("sim")
    assert identity.mrsigner == image.mrsigner
    # The two runners' measurements differ (sim is ours, gramine-sgx is the CPU's).
    assert image.measurement("sim") != image.measurement("gramine-sgx")


def test_a_failing_gramine_sgx_sign_fails_the_build(
    built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The signing step alone (a whole failing build would measure everything again first).
    monkeypatch.setenv("PATH", fake_path(tmp_path / "fake-bin"))
    monkeypatch.setenv("FAKE_GRAMINE_LOG", str(tmp_path / "calls.jsonl"))
    monkeypatch.setenv("FAKE_GRAMINE_MODE", "sign-enclave-too-small")
    work = tmp_path / "work"
    work.mkdir()
    image = light_copy(built.image, work / "image")
    with pytest.raises(RunnerError, match=r"(?s)gramine-sgx-sign failed: .*Enclave size is not"):
        _gramine_sign(image, work, built.key_path)
    assert not (image / "agent.sig").exists()


def test_without_gramine_sgx_sign_there_is_no_sgx_measurement(
    built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert (
        _gramine_sign(light_copy(built.image, tmp_path / "image"), tmp_path, built.key_path) is None
    )


# --- what the sim runner checks before a start -------------------------------------------------


def light_copy(image: EnclaveImage, directory: Path) -> Path:
    directory.mkdir()
    for name in ("image.json", "agent.manifest", "task.toml", "sim.sig"):
        shutil.copyfile(image.directory / name, directory / name)
    # The root stays in the store: the copy links to it as the image does.
    (directory / ROOTFS_LINK).symlink_to(os.readlink(image.directory / ROOTFS_LINK))
    return directory


def test_a_changed_manifest_does_not_match_its_signature(built: Built, tmp_path: Path) -> None:
    copy = light_copy(built.image, tmp_path / "image")
    text = (copy / "agent.manifest").read_text()
    assert 'LANG = "C.UTF-8"' in text
    (copy / "agent.manifest").write_text(text.replace('LANG = "C.UTF-8"', 'LANG = "C"'))
    with pytest.raises(RunnerError, match=r"does not match its signature \(MRENCLAVE\)") as info:
        SimRunner(tmp_path / "data").enclave_identity(EnclaveImage.load(copy))
    assert info.value.expected == built.image.info["mrenclave"]["sim"]


def _resign(copy: Path, **changes: Any) -> None:
    sig = SimSignature.from_json((copy / "sim.sig").read_text())
    fields = {**sig.__dict__, **changes}
    (copy / "sim.sig").write_text(SimSignature(**fields).to_json())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"signature": b"\x00" * 384}, "does not verify"),
        ({"isvsvn": 9}, "does not verify"),
        ({"debug": True}, "does not verify"),
        ({"mrsigner": b"\x11" * 32}, "MRSIGNER is not the hash"),
    ],
)
def test_a_tampered_signature_is_refused(
    built: Built, tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    copy = light_copy(built.image, tmp_path / "image")
    _resign(copy, **changes)
    with pytest.raises(RunnerError, match=message):
        SimRunner(tmp_path / "data").enclave_identity(EnclaveImage.load(copy))


def test_a_signature_for_other_isv_fields_is_refused(built: Built, tmp_path: Path) -> None:
    # Correctly signed, but for ISVSVN 5 while the manifest says 0: refused as EINIT would.
    copy = light_copy(built.image, tmp_path / "image")
    key = load_or_create_signing_key(built.key_path)
    genuine = SimSignature.from_json((copy / "sim.sig").read_text())
    forged = SimSignature(**{**genuine.__dict__, "isvsvn": 5, "signature": b""})
    signature = key.sign(forged.signed_bytes(), padding.PKCS1v15(), hashes.SHA256())
    forged = SimSignature(**{**forged.__dict__, "signature": signature})
    forged.verify()  # the signature itself is valid
    (copy / "sim.sig").write_text(forged.to_json())
    with pytest.raises(RunnerError, match="ISV fields"):
        SimRunner(tmp_path / "data").enclave_identity(EnclaveImage.load(copy))
