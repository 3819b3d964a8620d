"""``golem-graphene manifest render|check|expand``: verdicts, exit codes, JSON, files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from golem_graphene._cli import main

TEMPLATES = "gramine-manifests"
GOOD = 'libos.entrypoint = "/app"\nfs.mounts = [{ path = "/app", uri = "file:app" }]\n'


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["manifest", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def hello(vectors: Path) -> str:
    return str(vectors / TEMPLATES / "gramine__helloworld.manifest.template")


# --- render --------------------------------------------------------------------------------------


def test_render_to_stdout(capsys: pytest.CaptureFixture[str], hello: str) -> None:
    code, out, err = run(capsys, "render", hello, "-D", "log_level=error")
    assert code == 0
    assert 'libos.entrypoint = "/helloworld"' in out and 'loader.log_level = "error"' in out
    assert "{{" not in out
    assert err.endswith("OK\n")


def test_render_to_a_file_refuses_to_overwrite_without_force(
    capsys: pytest.CaptureFixture[str], hello: str, tmp_path: Path
) -> None:
    out_path = tmp_path / "hello.manifest"
    assert run(capsys, "render", hello, "-D", "log_level=error", "-o", str(out_path))[0] == 0
    first = out_path.read_text()
    assert 'loader.log_level = "error"' in first
    code, _, err = run(capsys, "render", hello, "-D", "log_level=debug", "-o", str(out_path))
    assert code == 2 and "--force" in err
    assert out_path.read_text() == first
    code, _, err = run(capsys, "render", hello, "-Dlog_level=debug", "-o", str(out_path), "--force")
    assert code == 0 and 'loader.log_level = "debug"' in out_path.read_text()
    assert f"OK: wrote {out_path}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hello.manifest"]  # no temp files left


def test_render_missing_variable_fails_naming_it(
    capsys: pytest.CaptureFixture[str], hello: str, tmp_path: Path
) -> None:
    out_path = tmp_path / "x.manifest"
    code, out, err = run(capsys, "render", hello, "-o", str(out_path))
    assert code == 1 and out == ""
    assert err.startswith("FAIL: manifest: ") and "'log_level' is undefined" in err
    assert not out_path.exists()


def test_render_usage_errors(
    capsys: pytest.CaptureFixture[str], hello: str, tmp_path: Path
) -> None:
    code, _, err = run(capsys, "render", hello, "-D", "1bad=x")
    assert code == 2 and "identifier" in err
    code, _, err = run(capsys, "render", str(tmp_path / "missing.template"))
    assert code == 2 and "cannot read the template" in err
    code, _, err = run(capsys, "render", hello, "-D", "log_level=error", "--expand", "--no-check")
    assert code == 2


def test_render_refuses_an_invalid_manifest_unless_told_not_to_check(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    template = tmp_path / "bad.template"
    template.write_text('libos.entrypoint = "/a"\nfs.mounts = []\nsgx.enclave_size = "{{ s }}"\n')
    code, out, err = run(capsys, "render", str(template), "-D", "s=300M")
    assert code == 1 and out == ""
    assert (
        "FAIL: sgx.enclave_size: must be a power of two (expected power of two, found 300M)" in err
    )
    code, out, _ = run(capsys, "render", str(template), "-D", "s=300M", "--no-check")
    assert code == 0 and 'sgx.enclave_size = "300M"' in out


def test_render_expand(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "app").write_bytes(b"binary")
    template = tmp_path / "app.template"
    template.write_text(GOOD + 'sgx.trusted_files = ["file:{{ name }}"]\n')
    code, out, _ = run(
        capsys,
        "render",
        str(template),
        "-D",
        "name=app",
        "--expand",
        "--base",
        str(tmp_path),
        "--skip-loader-entrypoint",
    )
    assert code == 0
    digest = hashlib.sha256(b"binary").hexdigest()
    assert f'{{ sha256 = "{digest}", uri = "file:app" }}' in out


# --- check ---------------------------------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "app.manifest") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_check_ok(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "check", write(tmp_path, GOOD))
    assert (code, out, err) == (0, "", "OK\n")


def test_check_fail_prints_one_line_per_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = GOOD + 'sgx.enclave_size = "300M"\nsgx.isvprodid = 70000\nsgx.nonpie_binary = true\n'
    code, out, err = run(capsys, "check", write(tmp_path, text))
    assert code == 1 and out == ""
    lines = err.splitlines()
    assert "FAIL: sgx.enclave_size: must be a power of two (expected power of two, found 300M)" in (
        lines
    )
    assert any(
        line.startswith("FAIL: sgx.isvprodid: must be an integer from 0 to 65535") for line in lines
    )
    assert any(line.startswith("warning: sgx.nonpie_binary:") for line in lines)
    assert "OK" not in lines


def test_check_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    text = GOOD + (
        'sgx.enclave_size = "1G"\nsgx.max_threads = 8\nsgx.debug = true\n'
        f'sgx.trusted_files = ["file:app", {{ uri = "file:b", sha256 = "{"a" * 64}" }}]\n'
    )
    code, out, err = run(capsys, "check", write(tmp_path, text), "--json")
    assert code == 0 and err == "OK\n"
    data = json.loads(out)
    assert data == {
        "verdict": "ok",
        "manifest": str(tmp_path / "app.manifest"),
        "problems": [],
        "entrypoint": "/app",
        "enclave_size": "1G",
        "enclave_size_bytes": 1 << 30,
        "max_threads": 8,
        "debug": True,
        "edmm_enable": False,
        "remote_attestation": "none",
        "isvprodid": 0,
        "isvsvn": 0,
        "trusted_files": 2,
        "trusted_files_hashed": 1,
        "allowed_files": 0,
        "mounts": 1,
        "expanded": False,
        "insecure": ["sgx.debug = true"],
    }


def test_check_json_failure(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(
        capsys, "check", write(tmp_path, GOOD + 'sgx.remote_attestation = "ias"\n'), "--json"
    )
    assert code == 1
    data = json.loads(out)
    assert data["verdict"] == "fail" and data["entrypoint"] is None
    assert [(p["key"], p["severity"]) for p in data["problems"]] == [
        ("sgx.remote_attestation", "error")
    ]
    assert data["problems"][0]["rule"].startswith("must be one of")


def test_check_malformed_toml(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "check", write(tmp_path, "libos.entrypoint = \n"))
    assert code == 1 and err.startswith("FAIL: <toml>: not a valid TOML document")


def test_check_non_utf8_file_is_a_failed_check(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "latin1.manifest"
    path.write_bytes(b'libos.entrypoint = "/caf\xe9"\n')
    code, _, err = run(capsys, "check", str(path))
    assert code == 1 and err.startswith("FAIL: <toml>: a manifest must be UTF-8")


def test_check_missing_file_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run(capsys, "check", str(tmp_path / "nope.manifest"), "--json")
    assert code == 2 and "no such file" in err
    assert json.loads(out)["error"]["code"] == "usage"


def test_check_real_rendered_template(
    capsys: pytest.CaptureFixture[str], hello: str, tmp_path: Path
) -> None:
    out_path = tmp_path / "hello.manifest"
    assert run(capsys, "render", hello, "-D", "log_level=error", "-o", str(out_path))[0] == 0
    code, out, _ = run(capsys, "check", str(out_path), "--json")
    assert code == 0 and json.loads(out)["entrypoint"] == "/helloworld"


def test_manifest_needs_an_action(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["manifest"]) == 2
    assert capsys.readouterr().err.startswith("error: the following arguments are required")


# --- expand --------------------------------------------------------------------------------------


def test_expand(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "app").write_bytes(b"binary")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "x.so").write_bytes(b"x")
    (tmp_path / "libsysdb.so").write_bytes(b"libos")
    manifest = write(
        tmp_path,
        GOOD + 'loader.entrypoint.uri = "file:libsysdb.so"\n'
        'sgx.trusted_files = ["file:app", "file:lib/"]\n',
    )
    out_path = tmp_path / "app.manifest.expanded"
    code, _, err = run(capsys, "expand", manifest, "--base", str(tmp_path), "-o", str(out_path))
    assert code == 0 and "OK: 2 trusted files measured" in err
    code, out, _ = run(capsys, "check", str(out_path), "--json")
    data = json.loads(out)
    assert code == 0 and data["expanded"] is True and data["trusted_files_hashed"] == 2
    text = out_path.read_text()
    assert hashlib.sha256(b"libos").hexdigest() in text
    assert hashlib.sha256(b"x").hexdigest() in text and '"file:lib/x.so"' in text


def test_expand_failures(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    manifest = write(tmp_path, GOOD + 'sgx.trusted_files = ["file:missing"]\n')
    code, out, err = run(
        capsys, "expand", manifest, "--base", str(tmp_path), "--skip-loader-entrypoint"
    )
    assert code == 1 and out == "" and "trusted file file:missing not found" in err
    ok = write(tmp_path, GOOD + 'loader.entrypoint.uri = "file:libsysdb.so"\n', "ok.manifest")
    code, _, err = run(capsys, "expand", ok, "--base", str(tmp_path))
    assert code == 1 and "loader.entrypoint.uri: file:libsysdb.so not found" in err
    code, _, err = run(capsys, "expand", ok, "--base", str(tmp_path / "nodir"))
    assert code == 2 and "--base" in err
    code, _, err = run(capsys, "expand", write(tmp_path, "x = ", "bad.manifest"))
    assert code == 1 and "FAIL: <toml>" in err
