"""The runtime's command line as the supervisor calls it, and golden JSON shapes.

The field lists below are those of research/golem.md section 2.6 (yagna ``ExeUnitDesc``,
``DeployResult``, ``OfferTemplate``); the golden files in ``golden/`` pin our exact output.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
import structlog
from _test_images import shell_image
from golem_support import GOLDEN, REPO_ROOT, SHELL_SPEC
from supervisor import RUNTIME_BINARY, ExeUnitSimulator, parse_deploy_result, run_cli

import golem_graphene
from golem_graphene.gramine.sgx_host import check_sgx_host
from golem_graphene.requestor.golem.package import TaskPackage
from golem_graphene.runtime.cli import add_arguments, dispatch
from golem_graphene.runtime.descriptor import descriptor
from golem_graphene.runtime.offer import OFFER_PROPERTIES

# research/golem.md 2.6: ExeUnitDesc (kebab-case), CounterDefinition, DeployResult, OfferTemplate.
DESCRIPTOR_FIELDS = {
    "name",
    "version",
    "supervisor-path",
    "runtime-path",
    "description",
    "extra-args",
    "properties",
    "config",
}
COUNTER_FIELDS = {"name", "description", "price"}
DEPLOY_RESULT_FIELDS = {"valid", "vols", "startMode"}
VOLUME_FIELDS = {"name", "path"}
START_MODES = {"empty", "blocking"}
OFFER_TEMPLATE_FIELDS = {"properties", "constraints"}
SEMVER = re.compile(r"\d+\.\d+\.\d+")


def matches(golden: Any, actual: Any) -> bool:
    """Equal, where golden ``<hex64>``, ``<string>`` and ``<version>`` stand for any such value."""
    if isinstance(golden, dict):
        return (
            isinstance(actual, dict)
            and set(golden) == set(actual)
            and all(matches(golden[k], actual[k]) for k in golden)
        )
    if isinstance(golden, list):
        return (
            isinstance(actual, list)
            and len(golden) == len(actual)
            and all(matches(g, a) for g, a in zip(golden, actual, strict=True))
        )
    if golden == "<hex64>":
        return isinstance(actual, str) and re.fullmatch("[0-9a-f]{64}", actual) is not None
    if golden == "<string>":
        return isinstance(actual, str) and bool(actual)
    if isinstance(golden, str) and "<version>" in golden:
        return actual == golden.replace("<version>", golem_graphene.__version__)
    return bool(golden == actual) and type(golden) is type(actual)


def golden(name: str) -> Any:
    return json.loads((GOLDEN / name).read_text())


def runtime(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """The runtime's command line in this process (its log events captured, not printed)."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    with structlog.testing.capture_logs():
        code = dispatch(parser.parse_args(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


# --- test -------------------------------------------------------------------------------------


async def test_self_test_reports_every_runner(runtime_flags: list[str], sandbox_ok: None) -> None:
    out = await run_cli([str(RUNTIME_BINARY), "runtime", *runtime_flags, "test"])
    assert out.code == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["runner"] == "sim" and report["ok"] is True
    assert set(report["runners"]) == {"sim", "gramine-sgx", "gramine-direct"}
    for check in report["runners"].values():
        assert set(check) == {"usable", "detail"} and check["detail"]
    assert re.fullmatch("[0-9a-f]{64}", report["sim_root_fingerprint"])
    assert out.stderr.startswith("OK: sim:")


@pytest.mark.skipif(check_sgx_host().usable, reason="this host can run gramine-sgx")
def test_self_test_without_flags_fails_plainly_on_a_host_without_sgx(tmp_path: Path) -> None:
    """ya-provider runs ``<runtime> test`` with no flags: gramine-sgx, not usable here."""
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path)}
    out = subprocess.run(
        [str(RUNTIME_BINARY), "runtime", "test"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 1
    assert out.stderr.startswith("FAIL: gramine-sgx: not an SGX host")
    assert json.loads(out.stdout)["runners"]["gramine-sgx"]["usable"] is False
    assert list(tmp_path.iterdir()) == []  # a failed self-check leaves nothing behind


# --- offer-template ---------------------------------------------------------------------------


def test_offer_template_matches_the_golden_file(
    runtime_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = runtime(
        ["--runner", "sim", "--data-dir", str(runtime_data), "offer-template"], capsys
    )
    assert code == 0
    template = json.loads(out)
    assert set(template) == OFFER_TEMPLATE_FIELDS
    assert matches(golden("offer_template.json"), template), template
    assert tuple(sorted(template["properties"])) == tuple(sorted(OFFER_PROPERTIES))
    assert all(k.startswith("golem.runtime.sgx.") for k in template["properties"])


# --- deploy -----------------------------------------------------------------------------------


async def test_deploy_of_a_tar_package_matches_the_golden_file(
    tmp_path: Path, shell_package: TaskPackage, runtime_flags: list[str], sandbox_ok: None
) -> None:
    exeunit = ExeUnitSimulator(tmp_path / "activity", shell_package.path, list(runtime_flags))
    result = await exeunit.deploy()
    obj = json.loads(result.raw)
    assert set(obj) == DEPLOY_RESULT_FIELDS and obj["startMode"] in START_MODES
    assert all(set(v) == VOLUME_FIELDS for v in obj["vols"])
    assert matches(golden("deploy_ok.json"), obj), obj
    assert (tmp_path / "activity" / "io").is_dir()


def test_deploy_accepts_a_folder_and_the_supervisors_extra_flags(
    tmp_path: Path, shell_spec: Path, runtime_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--runner", "sim", "--data-dir", str(runtime_data), "--workdir", str(tmp_path / "w")]
    argv += ["--task-package", str(shell_spec), "--volume-override", "{}", "--hostname", "h"]
    code, out, _ = runtime([*argv, "deploy", "--"], capsys)
    assert code == 0
    assert matches(golden("deploy_ok.json"), json.loads(out))


def _tar(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


SPEC = SHELL_SPEC.replace("{image}", "oci-archive:shell.tar@sha256:" + "0" * 64).encode()
BAD_PACKAGES: dict[str, tuple[bytes | None, str]] = {
    "traversal": (_tar([_file("task.toml", SPEC), _file("../evil", b"x")]), "plain"),
    "absolute": (_tar([_file("/etc/evil", b"x"), _file("task.toml", SPEC)]), "relative name"),
    "symlink": (
        _tar([_file("task.toml", SPEC), _link("passwd", "/etc/passwd", tarfile.SYMTYPE)]),
        "only regular files",
    ),
    "hardlink": (
        _tar([_file("task.toml", SPEC), _link("t2", "task.toml", tarfile.LNKTYPE)]),
        "only regular files",
    ),
    "hidden": (_tar([_file("task.toml", SPEC), _file(".env", b"x")]), "no leading dot"),
    "duplicate": (_tar([_file("task.toml", SPEC), _file("task.toml", SPEC)]), "twice"),
    "no spec": (_tar([_file("app.py", b"print(1)")]), "no task.toml"),
    "bad spec": (_tar([_file("task.toml", b"name = 1")]), "task spec"),
    "network": (
        _tar([_file("task.toml", SPEC.replace(b"[enclave]", b"network = true\n[enclave]"))]),
        "network",
    ),
    "not a tar": (b"\x00garbage" * 100, "neither a folder nor a readable tar"),
    "missing": (None, "does not exist"),
}


@pytest.mark.parametrize("case", sorted(BAD_PACKAGES))
def test_deploy_refuses_bad_packages(
    case: str, tmp_path: Path, runtime_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, reason = BAD_PACKAGES[case]
    package = tmp_path / "package.tar"
    if data is not None:
        package.write_bytes(data)
    argv = ["--runner", "sim", "--data-dir", str(runtime_data), "--workdir", str(tmp_path / "w")]
    code, out, err = runtime([*argv, "--task-package", str(package), "deploy"], capsys)
    assert code == 1
    result = json.loads(out)
    assert matches(golden("deploy_err.json"), result), result
    assert reason in result["valid"]["Err"], result
    assert err.startswith("FAIL: deploy:")
    assert not (tmp_path / "evil").exists() and not Path("/etc/evil").exists()
    assert not (tmp_path / "w" / ".gramine-sgx" / "deploy.json").exists()


def test_deploy_refuses_an_enclave_larger_than_the_memory_granted(
    tmp_path: Path, shell_spec: Path, runtime_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--runner", "sim", "--data-dir", str(runtime_data), "--workdir", str(tmp_path / "w")]
    argv += ["--task-package", str(shell_spec), "--mem-gib", "0.125"]
    code, out, _ = runtime([*argv, "deploy"], capsys)
    assert code == 1
    assert "more memory than the activity grants" in json.loads(out)["valid"]["Err"]


def test_deploy_refuses_a_package_whose_image_is_not_the_pinned_one(
    tmp_path: Path, shell_spec: Path, runtime_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The package's image is opened by the digest its spec pins: another image (here one more
    tool than the spec's) is refused before anything is built or run."""
    package = tmp_path / "package"
    shutil.copytree(shell_spec, package)
    swapped = tmp_path / "other"
    swapped.mkdir()
    shell_image(swapped, extra={"/usr/bin/extra": b"#!/bin/sh\n"})
    shutil.copyfile(swapped / "shell.tar", package / "shell.tar")
    argv = ["--runner", "sim", "--data-dir", str(runtime_data), "--workdir", str(tmp_path / "w")]
    code, out, _ = runtime([*argv, "--task-package", str(package), "deploy"], capsys)
    assert code == 1
    assert "image_digest:" in json.loads(out)["valid"]["Err"]
    assert not (tmp_path / "w" / ".gramine-sgx" / "deploy.json").exists()


def test_the_supervisor_reads_our_deploy_output() -> None:
    """The simulator's reading of DeployResult (from the first '{'; empty is Ok) is ours too."""
    noisy = 'warning: something\n{"valid": {"Ok": ""}, "vols": [], "startMode": "blocking"}'
    assert parse_deploy_result(noisy).start_mode == "blocking"
    assert parse_deploy_result("").valid == {"Ok": ""}


# --- start and run without a deployment -------------------------------------------------------


def test_start_and_run_refuse_plainly_before_deploy(
    tmp_path: Path, runtime_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from golem_graphene.errors import RunnerError

    argv = ["--runner", "sim", "--data-dir", str(runtime_data), "--workdir", str(tmp_path)]
    with pytest.raises(RunnerError, match="not deployed"):
        runtime([*argv, "start"], capsys)
    code, out, err = runtime([*argv, "run", "--entrypoint", "execute"], capsys)
    assert code == 2 and json.loads(out)["code"] == "invalid_state"
    assert "run attest first" in err
    code, out, _ = runtime([*argv, "run", "--entrypoint", "abort", "--"], capsys)
    assert code == 0 and json.loads(out)["ok"] is True


# --- the descriptor and install ---------------------------------------------------------------


def test_descriptor_matches_golden_packaging_and_the_documented_fields() -> None:
    shipped = json.loads((REPO_ROOT / "packaging" / "ya-runtime-gramine-sgx.json").read_text())
    assert shipped == golden("descriptor.json") == descriptor()
    assert isinstance(shipped, list) and len(shipped) == 1
    entry = shipped[0]
    assert set(entry) == DESCRIPTOR_FIELDS
    assert entry["name"] == "gramine-sgx" and SEMVER.fullmatch(entry["version"])
    assert set(entry["config"]) == {"counters"}
    for counter in entry["config"]["counters"].values():
        assert set(counter) == COUNTER_FIELDS and isinstance(counter["price"], bool)
    assert {"golem.usage.duration_sec", "golem.usage.cpu_sec"} <= set(entry["config"]["counters"])


def test_install_writes_a_descriptor_and_a_working_wrapper(
    tmp_path: Path, runtime_data: Path, capsys: pytest.CaptureFixture[str], sandbox_ok: None
) -> None:
    plugins = tmp_path / "plugins"
    code, _, err = runtime(
        [
            "--runner",
            "sim",
            "--data-dir",
            str(runtime_data),
            "install",
            "--plugins-dir",
            str(plugins),
        ],
        capsys,
    )
    assert code == 0 and err.startswith("OK: wrote")
    written = json.loads((plugins / "ya-runtime-gramine-sgx.json").read_text())
    assert written == descriptor()
    wrapper = plugins / written[0]["runtime-path"]
    assert os.access(wrapper, os.X_OK)
    # ya-provider runs `<runtime-path> test`: the provider's settings are baked in.
    out = subprocess.run([str(wrapper), "test"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["runner"] == "sim"
