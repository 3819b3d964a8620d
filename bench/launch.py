"""Launch cost of the ``sim`` runner against the same trivial program in bare bubblewrap.

    .venv/bin/python bench/launch.py              # 30 interleaved runs per side
    .venv/bin/python bench/launch.py --runs 100
    .venv/bin/python bench/launch.py --profile    # also cProfile the warm sim launches
    .venv/bin/python bench/launch.py --agent-image  # also time the pre-start checks of a
                                                    # real image (golem-graphene build)

The sim side is what a provider does per task: :meth:`SimRunner.launch` of an image (check the
simulated SIGSTRUCT and re-measure the manifest, hash-check every trusted file, lay out the
launch folder, start ``/dev/attestation``, start ``prlimit ... bwrap ...``) and wait for the
process to end; the program does the attestation dance, so a DCAP quote is generated and signed:

    /bin/sh -c 'printf x > /dev/attestation/user_report_data; cat /dev/attestation/quote >/dev/null'

The bare side starts ``/bin/sh -c true`` in ``bwrap --unshare-all --die-with-parent`` with
``/usr`` bound read-only (and the merged-/usr symlinks), through the same asyncio subprocess
machinery. Both run in this one process, interleaved, after one warm-up each; the runner's
trusted-file hash cache and mount cache persist across launches, as in a provider. The first
launch of a fresh runner (platform loaded from disk, caches empty) is reported apart as "cold",
and so is the very first launch on a new data directory (platform created).

Target (DESIGN.md section 7): at most 150 ms added per task (median). The figure is printed,
never asserted; ``--strict`` turns a miss into exit status 1. Each sim launch is also broken
down into phases (signature and measurement check, plan with the hash check, quote signing,
and the rest: process start, the program, the device's thread) to show where the time goes.

The trivial image trusts a handful of files; a real image (the agent, Python and its standard
library) trusts thousands, and the pre-start checks grow with that number. ``--agent-image``
builds ``task_specs/gzip-compress`` and times those checks (identity and plan) warm, per launch.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from golem_graphene._logging import configure_logging
from golem_graphene.gramine.manifest import Manifest
from golem_graphene.gramine.trusted_files import expand_trusted_files
from golem_graphene.host.image import (
    IMAGE_FORMAT,
    EnclaveImage,
    SimSignature,
    build_image,
    load_or_create_signing_key,
    sim_mrenclave,
)
from golem_graphene.host.runners import SimRunner, prepare_launch_dir
from golem_graphene.host.sandbox import SandboxPlan

TARGET_MS = 150.0
AGENT_SPEC = Path(__file__).resolve().parent.parent / "task_specs" / "gzip-compress"
SIM_SCRIPT = "printf x > /dev/attestation/user_report_data; cat /dev/attestation/quote >/dev/null"
PROGRAMS = ["/bin/sh", "/usr/bin/cat"]


# --- the image -------------------------------------------------------------------------------


def ldd(programs: list[str]) -> list[str]:
    libs: set[str] = set()
    for program in programs:
        out = subprocess.run(["ldd", program], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            parts = line.split()
            if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
                libs.add(parts[2])
            elif parts and parts[0].startswith("/"):
                libs.add(parts[0])
    return sorted(libs)


def build_trivial_image(root: Path) -> EnclaveImage:
    """A measured, signed image running the attestation dance in ``/bin/sh``."""
    img = root / "image"
    img.mkdir()
    trusted = [*PROGRAMS, *ldd(PROGRAMS)]
    tops = sorted({"/" + Path(p).parts[1] for p in trusted})
    argv = ["/bin/sh", "-c", SIM_SCRIPT]
    text = "\n".join(
        [
            'libos.entrypoint = "/bin/sh"',
            f"loader.argv = {json.dumps(argv)}",
            'loader.env.PATH = "/usr/bin:/bin"',
            "fs.mounts = [",
            '  { path = "/untrusted", uri = "file:io" },',
            '  { path = "/tmp", type = "tmpfs" },',
            *(f'  {{ path = "{top}", uri = "file:{top}" }},' for top in tops),
            "]",
            'sgx.remote_attestation = "dcap"',
            f"sgx.trusted_files = {json.dumps([f'file:{p}' for p in trusted])}",
            'sgx.allowed_files = ["file:io/"]',
        ]
    )
    manifest = expand_trusted_files(Manifest.from_toml(text), root, hash_loader_entrypoint=False)
    (img / "agent.manifest").write_text(manifest.to_toml())
    key = load_or_create_signing_key(root / "key.pem")
    measured = sim_mrenclave(manifest)
    signature = SimSignature.sign(key, measured, manifest)
    (img / "sim.sig").write_text(signature.to_json())
    (img / "task.toml").write_text(
        # The runner reads only the spec's limits: the image is a hand-made manifest of host
        # files (what the sandbox itself costs), not a container image.
        f'name = "bench"\n[enclave]\nimage = "oci-archive:none.tar@sha256:{"0" * 64}"\n'
        '[outputs]\nfiles = ["out"]\n[limits]\nwall_seconds = 60\n'
    )
    info = {
        "format": IMAGE_FORMAT,
        "mrenclave": {"sim": measured.hex(), "gramine-sgx": None},
        "mrsigner": signature.mrsigner.hex(),
    }
    (img / "image.json").write_text(json.dumps(info))
    return EnclaveImage.load(img)


# --- timing ----------------------------------------------------------------------------------


@dataclass
class Phases:
    """Seconds spent per named phase in the current launch."""

    current: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.current[name] += time.perf_counter() - start

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self.timed(name):
                return fn(*args, **kwargs)

        return wrapper

    def take(self) -> dict[str, float]:
        taken = dict(self.current)
        self.current.clear()
        return taken


class TimedSimRunner(SimRunner):
    """The sim runner with its phases timed (nothing else changes)."""

    phases: Phases

    def enclave_identity(self, image: EnclaveImage) -> Any:
        with self.phases.timed("identity"):
            return super().enclave_identity(image)

    def plan(self, image: EnclaveImage, launch_dir: Path, device_dir: Path) -> SandboxPlan:
        with self.phases.timed("plan"):
            return super().plan(image, launch_dir, device_dir)


def make_runner(data_dir: Path, phases: Phases) -> TimedSimRunner:
    runner = TimedSimRunner(data_dir)
    runner.phases = phases
    platform = runner.platform  # load (or create) now, timed by the caller
    platform.quote = phases.wrap("quote", platform.quote)  # type: ignore[method-assign]
    return runner


async def sim_launch(runner: SimRunner, image: EnclaveImage, launch: Path) -> float:
    start = time.perf_counter()
    process = await runner.launch(image, launch, stderr_path=launch.parent / "stderr.log")
    code = await process.wait()
    elapsed = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"the sim launch failed (exit {code}): see {launch.parent}/stderr.log")
    return elapsed


def bare_command() -> list[str]:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SystemExit("bubblewrap (bwrap) is not installed")
    cmd = [bwrap, "--ro-bind", "/usr", "/usr"]
    for top in ("bin", "lib", "lib64", "sbin"):
        path = Path("/" + top)
        if path.is_symlink():
            cmd += ["--symlink", os.readlink(path), f"/{top}"]
        elif path.is_dir():
            cmd += ["--ro-bind", str(path), f"/{top}"]
    return [
        *cmd,
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--unshare-all",
        "--die-with-parent",
        "--",
        "/bin/sh",
        "-c",
        "true",
    ]


async def bare_launch(cmd: list[str]) -> float:
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    code = await proc.wait()
    elapsed = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"bare bwrap failed (exit {code}): {' '.join(cmd)}")
    return elapsed


# --- statistics ------------------------------------------------------------------------------


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "mean_ms": statistics.fmean(values) * 1000,
        "median_ms": statistics.median(values) * 1000,
        "p95_ms": p95(values) * 1000,
        "min_ms": min(values) * 1000,
    }


def line(label: str, stats: dict[str, float]) -> str:
    return (
        f"{label:<22} mean {stats['mean_ms']:7.1f} ms   median {stats['median_ms']:7.1f} ms   "
        f"p95 {stats['p95_ms']:7.1f} ms   min {stats['min_ms']:7.1f} ms"
    )


# --- main ------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    image = build_trivial_image(root)
    phases = Phases()
    counter = iter(range(1_000_000))

    def launch_dir() -> Path:
        return root / "launches" / f"task-{next(counter)}"

    # The very first launch on a new data directory: the platform (PKI) is created.
    start = time.perf_counter()
    first_runner = make_runner(root / "data", phases)
    create_s = time.perf_counter() - start
    first = await sim_launch(first_runner, image, launch_dir())
    phases.take()

    # A fresh runner on the existing platform: loaded from disk, hash and mount caches empty.
    start = time.perf_counter()
    runner = make_runner(root / "data", phases)
    load_s = time.perf_counter() - start
    cold = await sim_launch(runner, image, launch_dir())
    cold_phases = phases.take()

    bare_cmd = bare_command()
    await bare_launch(bare_cmd)  # warm-up of the bare side (the sim side is warm already)
    sim: list[float] = []
    bare: list[float] = []
    per_phase: dict[str, list[float]] = defaultdict(list)
    profiler = cProfile.Profile() if args.profile else None
    for _ in range(args.runs):
        bare.append(await bare_launch(bare_cmd))
        if profiler is not None:
            profiler.enable()
        elapsed = await sim_launch(runner, image, launch_dir())
        if profiler is not None:
            profiler.disable()
        sim.append(elapsed)
        taken = phases.take()
        for name in ("identity", "plan", "quote"):
            per_phase[name].append(taken.get(name, 0.0))
        per_phase["rest"].append(elapsed - sum(taken.values()))
        shutil.rmtree(root / "launches", ignore_errors=True)

    result: dict[str, Any] = {
        "runs": args.runs,
        "sim": summary(sim),
        "bare": summary(bare),
        "added_median_ms": (statistics.median(sim) - statistics.median(bare)) * 1000,
        "cold_first_launch_ms": cold * 1000,
        "cold_platform_load_ms": load_s * 1000,
        "cold_phases_ms": {k: v * 1000 for k, v in cold_phases.items()},
        "first_launch_ever_ms": first * 1000,
        "platform_create_ms": create_s * 1000,
        "phases_median_ms": {k: statistics.median(v) * 1000 for k, v in per_phase.items()},
        "trusted_files": len(image.manifest.sgx.trusted_files),
        "target_ms": TARGET_MS,
    }
    result["target_met"] = result["added_median_ms"] <= TARGET_MS
    if args.agent_image:
        result["agent_image"] = agent_image_checks(root, args.runs)
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(args.top)
        result["profile"] = out.getvalue()
    return result


def agent_image_checks(root: Path, runs: int) -> dict[str, Any]:
    """Warm per-launch cost of the checks before a start, for a real agent image."""
    image = build_image(AGENT_SPEC, root / "agent-image", key_path=root / "key.pem")
    phases = Phases()
    runner = make_runner(root / "data", phases)
    samples: dict[str, list[float]] = defaultdict(list)
    for i in range(runs + 1):
        launch = root / "agent-launches" / f"task-{i}"
        prepare_launch_dir(image, launch)
        runner.enclave_identity(image)
        runner.plan(image, launch, launch / ".dev-attestation")
        taken = phases.take()
        if i == 0:
            cold = taken  # the first plan hashes every file
            continue
        for name, seconds in taken.items():
            samples[name].append(seconds)
    return {
        "trusted_files": len(image.manifest.sgx.trusted_files),
        "cold_ms": {k: v * 1000 for k, v in cold.items()},
        "warm_median_ms": {k: statistics.median(v) * 1000 for k, v in samples.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="launches per side (default 30)")
    parser.add_argument("--profile", action="store_true", help="cProfile the warm sim launches")
    parser.add_argument("--top", type=int, default=30, help="functions shown by --profile")
    parser.add_argument(
        "--agent-image", action="store_true", help="also time a real image's pre-start checks"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--strict", action="store_true", help="exit 1 if the target is missed")
    args = parser.parse_args(argv)
    if args.runs < 2:
        parser.error("--runs must be at least 2")
    configure_logging("console", "WARNING")  # keep per-launch log lines out of the figures
    with tempfile.TemporaryDirectory(prefix="gg-bench-launch-") as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "profile"}, indent=2))
    else:
        print(f"trivial program, {args.runs} interleaved launches per side (warm caches)")
        print(line("sim (with a quote)", result["sim"]))
        print(line("bare bwrap", result["bare"]))
        verdict = "MET" if result["target_met"] else "MISSED"
        print(
            f"added (median): {result['added_median_ms']:.1f} ms; target <= {TARGET_MS:.0f} ms: "
            f"{verdict}"
        )
        phases = ", ".join(f"{k} {v:.1f} ms" for k, v in result["phases_median_ms"].items())
        print(f"sim phases (median): {phases}")
        print(
            f"cold: first launch of a fresh runner {result['cold_first_launch_ms']:.1f} ms "
            f"(platform load {result['cold_platform_load_ms']:.1f} ms before it; phases "
            + ", ".join(f"{k} {v:.1f} ms" for k, v in result["cold_phases_ms"].items())
            + ")"
        )
        print(
            f"first launch on a new data directory {result['first_launch_ever_ms']:.1f} ms "
            f"(platform creation {result['platform_create_ms']:.1f} ms before it)"
        )
        if "agent_image" in result:
            agent = result["agent_image"]
            warm = ", ".join(f"{k} {v:.1f} ms" for k, v in agent["warm_median_ms"].items())
            cold = ", ".join(f"{k} {v:.1f} ms" for k, v in agent["cold_ms"].items())
            print(
                f"agent image ({agent['trusted_files']} trusted files), checks before a start: "
                f"warm median {warm}; first {cold}"
            )
        if "profile" in result:
            print(result["profile"])
    return 1 if args.strict and not result["target_met"] else 0


if __name__ == "__main__":
    sys.exit(main())
