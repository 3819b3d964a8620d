"""The measurement of a hermetic image is reproducible: the same on any machine, in any folder, at
any time, however the image is packed; and it follows the image's content.

Images here are the repository's task images (built from pinned Debian packages by
``scripts/task-images``) repacked by ``skopeo`` (a tool nobody here wrote) into the other
transports and compressions; measurements are taken by the installed CLI in child processes
with their own cache, working folder and ``PATH``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from golem_graphene.host.image import build_image
from golem_graphene.host.measure import measure
from golem_graphene.images import ImageStore

REPO = Path(__file__).resolve().parents[2]
SPECS = REPO / "task_specs"
CLI = Path(sys.executable).with_name("golem-graphene")

pytestmark = pytest.mark.skipif(
    not (SPECS / "gzip-compress" / "image.tar").is_file(),
    reason="the task images are not built (make task-images)",
)


def _measure_cli(args: list[str], *, cwd: Path, cache: Path, path: str) -> dict[str, object]:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "PATH": path}
    done = subprocess.run(
        [str(CLI), "measure", *args, "--json"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def _copy_spec(name: str, target: Path, *, mtime: int) -> Path:
    shutil.copytree(SPECS / name, target, ignore=shutil.ignore_patterns("sample"))
    for path in [target, *target.rglob("*")]:
        os.utime(path, (mtime, mtime))
    return target


def test_the_same_spec_measures_the_same_in_other_folders_times_and_paths(tmp_path: Path) -> None:
    one = _copy_spec("csv-stats", tmp_path / "a" / "csv-stats", mtime=0)
    two = _copy_spec("csv-stats", tmp_path / "elsewhere" / "deeper" / "spec", mtime=2_000_000_000)
    system_path = os.environ.get("PATH", "/usr/bin:/bin")
    reversed_path = ":".join(reversed(system_path.split(":")))
    first = _measure_cli(
        ["--spec", str(one)], cwd=tmp_path, cache=tmp_path / "cache-1", path=system_path
    )
    second = _measure_cli(
        ["--spec", "spec"], cwd=two.parent, cache=tmp_path / "cache-2", path=reversed_path
    )
    assert first == second
    assert first["sim"] == {"mrenclave": measure(spec=SPECS / "csv-stats").sim}


def _other_host_python() -> str | None:
    """Another build of this Python version than the one running the tests (Debian's
    ``/usr/bin/python3`` beside a pyenv or venv interpreter); it can import the same wheels."""
    ours = os.path.realpath(sys.executable)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (f"/usr/bin/{version}", f"/usr/local/bin/{version}", shutil.which(version)):
        if candidate and os.path.isfile(candidate) and os.path.realpath(candidate) != ours:
            return candidate
    return None


def test_another_host_python_measures_the_same(tmp_path: Path) -> None:
    """The provider's Python (another patch release, another build, other paths) is not part
    of the enclave: the same spec measures the same under either interpreter."""
    other = _other_host_python()
    if other is None:
        pytest.skip("no second build of this Python version on this host")
    import sysconfig

    packages = sysconfig.get_paths()["purelib"]
    env = {
        **os.environ,
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "PYTHONPATH": f"{REPO}:{packages}",
        "PYTHONNOUSERSITE": "1",
    }
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from golem_graphene.host.measure import measure\n"
        "print(json.dumps([sys.version, measure(spec=Path(sys.argv[1])).sim]))\n"
    )
    done = subprocess.run(
        [other, "-c", script, str(SPECS / "csv-stats")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    version, sim = json.loads(done.stdout.splitlines()[-1])  # after the store's log lines
    assert version != sys.version  # really another interpreter
    assert sim == measure(spec=SPECS / "csv-stats").sim


def test_a_providers_build_has_the_measured_mrenclave(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "provider-store")
    built = build_image(
        SPECS / "gzip-compress", tmp_path / "image", key_path=tmp_path / "key.pem", store=store
    )
    measured = measure(spec=SPECS / "gzip-compress", store=ImageStore(tmp_path / "requestor"))
    sim = built.measurement("sim")
    assert sim is not None and sim.hex() == measured.sim
    assert built.info["image_digest"] == measured.image_digest


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_every_packing_and_compression_measures_the_same(tmp_path: Path) -> None:
    source = f"oci-archive:{SPECS / 'gzip-compress' / 'image.tar'}:latest"
    docker = tmp_path / "gzip.docker.tar"
    layout = tmp_path / "layout"
    for args in (
        [source, f"docker-archive:{docker}:gzip:1"],
        ["--dest-compress", "--dest-compress-format", "zstd", source, f"oci:{layout}:z"],
        ["--dest-compress", "--dest-compress-format", "gzip", source, f"oci:{layout}:g"],
    ):
        subprocess.run(["skopeo", "copy", "-q", *args], check=True, timeout=300)
    path = os.environ.get("PATH", "/usr/bin:/bin")
    results = [
        _measure_cli([reference], cwd=tmp_path, cache=tmp_path / f"cache-{i}", path=path)
        for i, reference in enumerate(
            (source, f"docker-archive:{docker}", f"oci:{layout}:z", f"oci:{layout}:g")
        )
    ]
    assert len({r["image_digest"] for r in results}) == 4  # four different packings...
    assert len({json.dumps(r["sim"]) for r in results}) == 1  # ...one measurement


def test_specs_with_other_workloads_measure_differently() -> None:
    default = measure(f"oci-archive:{SPECS / 'gzip-compress' / 'image.tar'}")
    spec = measure(spec=SPECS / "gzip-compress")
    assert default.image_digest == spec.image_digest
    assert default.sim != spec.sim  # the spec declares an input, an output and limits


def test_a_spec_refuses_an_image_it_does_not_pin(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            str(CLI),
            "measure",
            f"oci-archive:{SPECS / 'word-freq' / 'image.tar'}",
            "--spec",
            str(SPECS / "csv-stats"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)},
    )
    assert done.returncode == 1, done.stderr
    assert "not the one the spec pins" in done.stderr
