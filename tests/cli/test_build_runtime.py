"""Issue 14 items 2 and 13: ``build`` with a relative ``-o``; keys and files are created or
replaced only when asked; the runtime does not offer what this host cannot run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _cli_support import REPO, Cli, err

CSV_STATS = REPO / "task_specs" / "csv-stats"


def test_build_with_a_relative_output_folder(gg: Cli, work: Path) -> None:
    result = gg("build", CSV_STATS, "-o", "images/csv", "--new-key", "--json", timeout=300)
    assert result.returncode == 0, err(result)
    info = json.loads(result.stdout)
    assert Path(info["directory"]) == work / "images" / "csv"
    assert (work / "images" / "csv" / "image.json").is_file()
    assert "created a new enclave signing key" in err(result)
    # the second build uses the key the first one made, and says nothing about keys
    again = gg("build", CSV_STATS, "-o", "images/csv", "--force", "--json", timeout=300)
    assert again.returncode == 0, err(again)
    assert json.loads(again.stdout)["mrsigner"] == info["mrsigner"]
    assert "signing key" not in err(again)


def test_build_never_creates_a_key_unasked(gg: Cli, work: Path, home: Path) -> None:
    result = gg("build", CSV_STATS, "--key", "typo/k.pem", timeout=120)
    assert result.returncode == 2, err(result)
    assert err(result).startswith("error: --key 'typo/k.pem' does not exist; pass --new-key")
    assert not (work / "typo").exists()
    default = gg("build", CSV_STATS, timeout=120)
    assert default.returncode == 2, err(default)
    assert "--new-key" in err(default)
    assert not (home / ".config" / "golem-graphene").exists()


def _install(gg: Cli, plugins: Path, *flags: str) -> object:
    return gg("runtime", "install", "--plugins-dir", plugins, "--data-dir", "rt", *flags)


def test_runtime_install_does_not_silently_overwrite(gg: Cli, work: Path) -> None:
    plugins = work / "plugins"
    first = _install(gg, plugins, "--runner", "sim")
    assert first.returncode == 0, err(first)
    descriptor = plugins / "ya-runtime-gramine-sgx.json"
    wrapper = plugins / "ya-runtime-gramine-sgx" / "ya-runtime-gramine-sgx"
    before = wrapper.read_text()
    # the same installation again is fine; other flags are refused until --force
    assert _install(gg, plugins, "--runner", "sim").returncode == 0
    other = _install(gg, plugins, "--runner", "gramine-sgx")
    assert other.returncode == 2, err(other)
    assert "exists with other contents" in err(other) and "--force" in err(other)
    assert wrapper.read_text() == before
    forced = _install(gg, plugins, "--runner", "gramine-sgx", "--force")
    assert forced.returncode == 0, err(forced)
    assert "gramine-sgx" in wrapper.read_text() and wrapper.read_text() != before
    descriptor.write_text("[]\n")  # someone else's descriptor
    assert _install(gg, plugins, "--runner", "gramine-sgx").returncode == 2
    assert descriptor.read_text() == "[]\n"


@pytest.mark.skipif(Path("/dev/sgx_enclave").exists(), reason="this host has SGX")
def test_offer_template_refuses_a_runner_this_host_cannot_run(gg: Cli, work: Path) -> None:
    result = gg("runtime", "--data-dir", "rt", "offer-template", timeout=60)
    assert result.returncode == 1, err(result)
    assert result.stdout == b""
    assert err(result).startswith("FAIL: runner: no offer: the gramine-sgx runner cannot run")
    sim = gg("runtime", "offer-template", "--runner", "sim", "--data-dir", "rt", timeout=60)
    assert sim.returncode == 0, err(sim)
    properties = json.loads(sim.stdout)["properties"]
    assert properties["golem.runtime.sgx.simulated"] is True
    assert properties["golem.runtime.sgx.libos_version"] != "unknown"


def test_runtime_flags_after_the_command(gg: Cli) -> None:
    result = gg("runtime", "test", "--runner", "sim", "--data-dir", "rt", timeout=60)
    assert result.returncode in (0, 1), err(result)
    assert json.loads(result.stdout)["runner"] == "sim"
