"""Gramine install detection: graminelibos, the gramine-manifest interpreter, install dirs."""

from __future__ import annotations

from pathlib import Path

import pytest

from golem_graphene.errors import ManifestError
from golem_graphene.gramine.install import GramineInstall, _detect_gramine

# --- Gramine install detection -------------------------------------------------------------------


def test_detection_prefers_graminelibos(tmp_path: Path) -> None:
    fake = type("Mod", (), {"_CONFIG_PKGLIBDIR": "/opt/g/lib/x86_64-linux-gnu/gramine"})
    found = _detect_gramine(
        import_module=lambda name: fake, which=lambda name: None, candidates=[str(tmp_path)]
    )
    assert found == GramineInstall(
        Path("/opt/g/lib/x86_64-linux-gnu/gramine"), True, "graminelibos"
    )


def test_detection_asks_the_gramine_manifest_interpreter(tmp_path: Path) -> None:
    interpreter = tmp_path / "py"
    interpreter.write_text(f"#!/bin/sh\nprintf '%s' '{tmp_path}/pkglib'\n")
    interpreter.chmod(0o755)
    script = tmp_path / "gramine-manifest"
    script.write_text(f"#!{interpreter}\n")

    def no_module(name: str) -> object:
        raise ImportError(name)

    found = _detect_gramine(import_module=no_module, which=lambda name: str(script), candidates=[])
    assert found == GramineInstall(tmp_path / "pkglib", True, "gramine-manifest")


def test_detection_falls_back_to_install_dirs_then_the_debian_stand_in(tmp_path: Path) -> None:
    def no_module(name: str) -> object:
        raise ImportError(name)

    (tmp_path / "libsysdb.so").write_bytes(b"\x7fELF")
    found = _detect_gramine(
        import_module=no_module,
        which=lambda name: None,
        candidates=[str(tmp_path / "none"), str(tmp_path)],
    )
    assert found == GramineInstall(tmp_path, True, "filesystem")
    stand_in = _detect_gramine(import_module=no_module, which=lambda name: None, candidates=[])
    assert stand_in == GramineInstall(Path("/usr/lib/x86_64-linux-gnu/gramine"), False, "stand-in")
    assert stand_in.libos == Path("/usr/lib/x86_64-linux-gnu/gramine/libsysdb.so")
    assert stand_in.runtimedir() == Path("/usr/lib/x86_64-linux-gnu/gramine/runtime/glibc")
    assert stand_in.runtimedir("musl") == Path("/usr/lib/x86_64-linux-gnu/gramine/runtime/musl")
    with pytest.raises(ManifestError, match="unsupported libc"):
        stand_in.runtimedir("uclibc")


def test_gramine_install_at(tmp_path: Path) -> None:
    assert GramineInstall.at(tmp_path).installed is False
    (tmp_path / "libsysdb.so").write_bytes(b"")
    install = GramineInstall.at(tmp_path)
    assert install.installed and install.source == "explicit"
    assert install.libos_uri == f"file:{tmp_path}/libsysdb.so"
    with pytest.raises(ManifestError, match="absolute"):
        GramineInstall.at("relative/dir")
