"""``golem-graphene run --image``: the README's demo as a user types it, against a real sim
provider (``provider serve --open --accept-images``) on loopback.

The demo image is Debian's gzip built by ``scripts/task-images`` as a ``docker save``-style
archive; the run compresses a file confidentially and the result is what gzip gives. Usage
mistakes (no such image, a pin that does not match, SPEC and ``--image`` together, ARGS without
``--image``) are exit 2 before any provider is contacted.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cli_support import REPO, Cli, ServedProvider, err

SCRIPT = REPO / "scripts" / "task-images"
CACHE = REPO / "build" / "debs"
UNREACHABLE = "http://127.0.0.1:9"  # nothing listens: a contacted provider would fail, not 2


@pytest.fixture(scope="module")
def gzip_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Debian's gzip image as a docker archive, built by the repository's script."""
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is missing (a Debian host builds the demo image)")
    out = tmp_path_factory.mktemp("demo-image")
    argv = [sys.executable, str(SCRIPT), "--cache", str(CACHE), "--format", "docker-archive"]
    done = subprocess.run(
        [*argv, "--out-dir", str(out), "gzip"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [archive] = out.glob("gzip/*.tar")
    return archive


@pytest.fixture
def served(gg: Cli, work: Path) -> Iterator[ServedProvider]:
    provider = ServedProvider(
        gg,
        work / "provider.log",
        "--open",
        "--accept-images",
        "--port",
        "0",
        "--data-dir",
        work / "provider-data",
        "--ready-file",
        work / "ready.json",
    )
    provider.wait_listening()
    deadline = time.monotonic() + 60
    while not (work / "ready.json").exists() or not (work / "ready.json").read_text():
        assert time.monotonic() < deadline, provider.text()
        time.sleep(0.05)
    yield provider
    provider.stop()


def test_a_docker_archive_runs_confidentially_with_one_command(
    gg: Cli, work: Path, served: ServedProvider, gzip_archive: Path
) -> None:
    assert "accepting images from requestors" in served.text()
    root = json.loads((work / "ready.json").read_text())["simulation_root"]
    data = work / "data.txt"
    data.write_bytes(b"".join(b"line %d\n" % i for i in range(5000)))
    common = ["--provider", served.url, "--input", f"data.txt={data}"]
    common += ["--trust-simulated-root", root]
    done = gg("run", "--image", f"docker-archive:{gzip_archive}", *common, "--out", "results")
    assert done.returncode == 0, err(done)
    assert gzip.decompress((work / "results" / "stdout").read_bytes()) == data.read_bytes()
    text = err(done)
    assert "offered to" in text and "OK: task" in text
    # Again, with the workload's arguments after --: another spec, offered and run the same way.
    done = gg(
        "run",
        "--image",
        f"docker-archive:{gzip_archive}",
        *common,
        "--out",
        "again",
        "--json",
        "--",
        "inputs/data.txt",
    )
    assert done.returncode == 0, err(done)
    assert json.loads(done.stdout)["verdict"] == "ok"
    assert gzip.decompress((work / "again" / "stdout").read_bytes()) == data.read_bytes()
    specs = sorted(p.name for p in (work / "provider-data" / "requestor-specs").iterdir())
    assert len(specs) == 2 and all(name.startswith("run-") for name in specs)
    # The private spec folders are gone.
    assert list((gg.home / ".cache" / "golem-graphene" / "run-image").iterdir()) == []


def test_a_provider_that_does_not_accept_images_is_a_clear_failure(
    gg: Cli, work: Path, gzip_archive: Path
) -> None:
    provider = ServedProvider(
        gg, work / "provider.log", "--open", "--port", "0", "--data-dir", work / "data"
    )
    provider.wait_listening()
    try:
        done = gg(
            "run",
            "--image",
            f"docker-archive:{gzip_archive}",
            "--provider",
            provider.url,
            "--out",
            "results",
            "--trust-simulated-root",
            "0" * 64,
        )
    finally:
        provider.stop()
    assert done.returncode == 1, err(done)
    assert "FAIL: images_not_accepted: offer:" in err(done)
    assert not (work / "results").exists()


@pytest.mark.parametrize(
    ("words", "says"),
    [
        (["--image", "docker-archive:missing.tar"], "no such file or folder 'missing.tar'"),
        (["--image", "docker-archive:{archive}@sha256:" + "0" * 64], "the pinned digest"),
        (["task_specs/gzip-compress", "--image", "docker-archive:{archive}"], "exactly one"),
        ([], "exactly one"),
        (["task_specs/gzip-compress", "--", "x"], "arguments after -- are for --image"),
        (["--image", "docker-archive:{archive}", "--input", "../x=data.txt"], "input"),
        (["--image", "docker-archive:{archive}", "--input", "data.txt=nope"], "nope"),
    ],
)
def test_usage_mistakes_are_exit_2_before_any_provider(
    gg: Cli, work: Path, gzip_archive: Path, words: list[str], says: str
) -> None:
    shutil.copytree(REPO / "task_specs" / "gzip-compress", work / "task_specs" / "gzip-compress")
    words = [w.replace("{archive}", str(gzip_archive)) for w in words]
    done = gg("run", "--provider", UNREACHABLE, "--out", "results", *words)
    assert done.returncode == 2, err(done)
    assert says in err(done)
    assert not (work / "results").exists()
    assert not (gg.home / ".config" / "golem-graphene" / "identity.txt").exists()
