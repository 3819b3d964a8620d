"""Load on one provider (sim runner): concurrent tasks of mixed sizes, a second wave, reclaim.

    .venv/bin/python bench/load.py                      # 32 tasks at once, then a wave of 8
    .venv/bin/python bench/load.py --tasks 64 --limit 32 --json

The provider runs as a child process, ``golem-graphene provider serve --config FILE``, with
``limits.max_concurrent_tasks = --limit``. After a warm-up task (the provider builds the image
and hashes the trusted files once), the first wave creates ``--tasks`` tasks of mixed input
sizes at once; while they are active, a second wave of ``--second-wave`` creates is refused with
429 (``too_many_tasks``) by the configured limit, and runs once the first wave has finished.
Every task runs the whole requestor flow (create, attest with quote verification, seal and
upload the input, start, wait, download, verify the receipt, decrypt, delete) and its output is
compared with its input (the workload copies it).

Printed: throughput (tasks/s and input MiB/s over the first wave), latency percentiles (p50, p90,
p99, max) of whole tasks, the 429 count, the provider's peak RSS (``VmHWM`` from
``/proc/<pid>/status``) and its RSS before the load, its open descriptors before and after, and
whether every task's folder, sandbox process and temporary file was reclaimed (the
provider's standby enclave, kept ready for the next task, is not counted). The requestors
run in this process, so their CPU competes with the provider's: the figures are end to end.

Target (DESIGN.md section 7): 32 tasks at once, no failure, bounded memory. ``--strict`` turns a
failure, a missing 429 or a leftover into exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from _task_image import shell_image

from golem_graphene._logging import configure_logging
from golem_graphene.protocol.spec import spec_digest
from golem_graphene.requestor.client import Requestor, RequestorPolicy
from golem_graphene.requestor.measure import measure_locally
from golem_graphene.sealing.keys import X25519Identity

MIB = 1024 * 1024
SIZES = [0, 4096, 65_536, 262_144, MIB, 4 * MIB, 8 * MIB]

SPEC = """\
name = "load"
description = "Copies its input to its output (bench/load.py)"

[enclave]
image = "{image}"
args = ["gzip -dcf inputs/data.bin > outputs/out.bin"]
enclave_size = "256M"
max_threads = 4

[[inputs]]
name = "data.bin"
max_size = "64M"

[outputs]
files = ["out.bin"]

[limits]
wall_seconds = 300
memory = "256M"
output_size = "64M"
"""


@dataclass
class Provider:
    """The provider child process."""

    work: Path
    limit: int
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    name: str = field(default_factory=lambda: f"data-{secrets.token_hex(6)}")

    @property
    def data_dir(self) -> Path:
        return self.work / self.name

    def start(self) -> None:
        config = self.work / "provider.toml"
        config.write_text(
            "\n".join(
                [
                    'bind = "127.0.0.1"',
                    "port = 0",
                    f"data_dir = {json.dumps(str(self.data_dir))}",
                    f"specs_dir = {json.dumps(str(self.work / 'specs'))}",
                    "[auth]",
                    f"tokens = [{json.dumps(self.token)}]",
                    "[limits]",
                    f"max_concurrent_tasks = {self.limit}",
                    f"max_queued_tasks = {4 * self.limit}",
                ]
            )
            + "\n"
        )
        log = self.work / "provider.log"
        with open(log, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "golem_graphene", "provider", "serve", "--config", config],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            match = re.search(rb"provider listening on (http://\S+)", log.read_bytes())
            if match:
                self.url = match.group(1).decode()
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise SystemExit(f"the provider did not start:\n{log.read_text()[-3000:]}")

    def status_kib(self, field_name: str) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
        raise LookupError(field_name)

    def fds(self) -> int:
        assert self.proc is not None
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def leftover_processes(marker: str) -> list[str]:
    """Processes whose command line or mounts name ``marker`` (sandboxes bind the launch dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            text = (entry / "cmdline").read_bytes().decode(errors="replace")
            text += (entry / "mountinfo").read_text(errors="replace")
        except OSError:
            continue
        if marker in text:
            found.append(entry.name)
    return found


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


async def run_task(
    requestor: Requestor,
    spec: Path,
    data: Path,
    out: Path,
    created: tuple[Any, float] | None = None,
) -> float:
    """The whole flow of one task (from ``created``, a task and when its create was sent, if
    given); returns its latency in seconds, from its create."""
    if created is None:
        started = time.monotonic()
        task = await requestor.create(spec)
    else:
        task, started = created
    attested = await requestor.attest(task)
    await requestor.send_inputs(attested, {"data.bin": data})
    await requestor.start(attested)
    await requestor.wait(attested)
    result = await requestor.fetch(attested, out)
    await requestor.channel.delete(attested.ref)
    if result.outputs["out.bin"].read_bytes() != data.read_bytes():
        raise SystemExit(f"task {attested.ref.task_id}: the output differs from the input")
    shutil.rmtree(out)
    return time.monotonic() - started


async def bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    spec = work / "specs" / "load"
    spec.mkdir(parents=True)
    (spec / "task.toml").write_text(SPEC.replace("{image}", shell_image()))
    mrenclave = await asyncio.to_thread(measure_locally, spec / "task.toml", "sim")
    provider = Provider(work, args.limit)
    provider.start()
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{provider.url}/v1/health") as response,
        ):
            root = (await response.json())["sim_root_fingerprint"]
        policy = RequestorPolicy(trusted_simulation_roots=(root,), expected_mrenclave=(mrenclave,))
        inputs = []
        for number in range(args.tasks + args.second_wave):
            path = work / f"in{number}.bin"
            path.write_bytes(os.urandom(SIZES[number % len(SIZES)]))
            inputs.append(path)
        identity = X25519Identity.generate()
        async with Requestor(
            provider.url, identity=identity, token=provider.token, policy=policy
        ) as requestor:
            started = time.monotonic()
            await run_task(requestor, spec, inputs[0], work / "warm-up")
            warm_up = time.monotonic() - started
            rss_before = provider.status_kib("VmRSS")
            fds_before = provider.fds()

            # First wave: every task created at once, then run to the end concurrently.
            started = time.monotonic()

            async def create() -> tuple[Any, float]:
                at = time.monotonic()
                return await requestor.create(spec), at

            created = await asyncio.gather(*(create() for _ in range(args.tasks)))
            refused = 0
            async with aiohttp.ClientSession() as http:
                for _ in range(args.second_wave):
                    body = {
                        "spec_name": "load",
                        "spec_digest": spec_digest(spec / "task.toml"),
                        "requestor_key": identity.recipient().to_string(),
                        "nonce": secrets.token_hex(32),
                    }
                    async with http.post(
                        f"{provider.url}/v1/tasks",
                        json=body,
                        headers={"Authorization": f"Bearer {provider.token}"},
                    ) as response:
                        answer = await response.json()
                        if response.status == 429 and answer["code"] == "too_many_tasks":
                            refused += 1
                        elif response.status == 201:  # not refused: clean it up
                            async with http.delete(
                                f"{provider.url}/v1/tasks/{answer['task_id']}",
                                headers={
                                    "Authorization": f"Bearer {provider.token}",
                                    "X-Task-Token": answer["capability_token"],
                                },
                            ):
                                pass
            latencies = await asyncio.gather(
                *(
                    run_task(requestor, spec, inputs[n], work / f"out{n}", created[n])
                    for n in range(args.tasks)
                )
            )
            first_wave = time.monotonic() - started
            # Second wave, now that capacity is free.
            started = time.monotonic()
            second = await asyncio.gather(
                *(
                    run_task(requestor, spec, inputs[n], work / f"out{n}")
                    for n in range(args.tasks, args.tasks + args.second_wave)
                )
            )
            second_wave = time.monotonic() - started
        peak = provider.status_kib("VmHWM")
        rss_after = provider.status_kib("VmRSS")
        await asyncio.sleep(1.0)  # let closed connections go
        fds_after = provider.fds()
        tasks_left = sorted(p.name for p in (provider.data_dir / "tasks").iterdir())
        stray = [
            str(p.relative_to(provider.data_dir))
            for p in provider.data_dir.rglob("*")
            if p.name.endswith((".part", ".tmp")) and "images" not in p.parts
        ]
        # The provider's standby enclave (one per image in use) is not a leftover.
        standby_root = provider.data_dir / "standby"
        standby = set(leftover_processes(str(standby_root)))
        processes = [p for p in leftover_processes(provider.data_dir.name) if p not in standby]
    finally:
        provider.stop()
    moved = sum(inputs[n].stat().st_size for n in range(args.tasks))
    return {
        "tasks": args.tasks,
        "limit": args.limit,
        "warm_up_seconds": round(warm_up, 2),
        "first_wave_seconds": round(first_wave, 2),
        "throughput_tasks_per_s": round(args.tasks / first_wave, 2),
        "throughput_input_mib_per_s": round(moved / MIB / first_wave, 2),
        "latency_s": {
            "p50": round(percentile(latencies, 50), 2),
            "p90": round(percentile(latencies, 90), 2),
            "p99": round(percentile(latencies, 99), 2),
            "max": round(max(latencies), 2),
        },
        "second_wave": {
            "tasks": args.second_wave,
            "refused_429_while_full": refused,
            "seconds_once_free": round(second_wave, 2),
            "latency_p50_s": round(percentile(second, 50), 2) if second else None,
        },
        "provider_rss_mib": {
            "before_load": round(rss_before / 1024, 1),
            "peak_vmhwm": round(peak / 1024, 1),
            "after": round(rss_after / 1024, 1),
        },
        "provider_fds": {"before": fds_before, "after": fds_after},
        "reclaimed": {
            "task_folders_left": tasks_left,
            "stray_files": stray,
            "sandbox_processes_left": processes,
            # More standby enclaves than the pool keeps (1 per image) would be a leak.
            "standby_enclaves_over_pool": max(0, len(list(standby_root.glob("*"))) - 1),
        },
        "input_sizes": SIZES,
        "cpus": os.cpu_count(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=32, help="first wave (default 32)")
    parser.add_argument("--limit", type=int, default=None, help="max_concurrent_tasks")
    parser.add_argument("--second-wave", type=int, default=8, help="second wave (default 8)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--strict", action="store_true", help="exit 1 on a missed target")
    args = parser.parse_args()
    args.limit = args.limit or args.tasks
    configure_logging("console", "WARNING")  # the requestors' log lines go to stderr
    work = Path(tempfile.mkdtemp(prefix="golem-graphene-load-"))
    try:
        result = asyncio.run(bench(args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    problems = []
    if args.limit <= args.tasks and result["second_wave"]["refused_429_while_full"] != (
        args.second_wave
    ):
        problems.append("the second wave was not refused with 429 while the provider was full")
    if any(result["reclaimed"].values()):
        problems.append(f"not everything was reclaimed: {result['reclaimed']}")
    if args.json:
        print(json.dumps({**result, "problems": problems}, indent=2))
    else:
        lat = result["latency_s"]
        rss = result["provider_rss_mib"]
        print(
            f"{result['tasks']} concurrent tasks (limit {result['limit']}, "
            f"{result['cpus']} CPUs), input sizes {', '.join(str(s) for s in SIZES)} bytes\n"
            f"  warm-up task (image build, trusted-file hashing): {result['warm_up_seconds']} s\n"
            f"  first wave: {result['first_wave_seconds']} s, "
            f"{result['throughput_tasks_per_s']} tasks/s, "
            f"{result['throughput_input_mib_per_s']} MiB/s of input\n"
            f"  latency per task: p50 {lat['p50']} s, p90 {lat['p90']} s, p99 {lat['p99']} s, "
            f"max {lat['max']} s\n"
            f"  second wave: {result['second_wave']['refused_429_while_full']}/"
            f"{result['second_wave']['tasks']} refused with 429 while full, then ran in "
            f"{result['second_wave']['seconds_once_free']} s\n"
            f"  provider RSS: {rss['before_load']} MiB before, peak (VmHWM) "
            f"{rss['peak_vmhwm']} MiB, {rss['after']} MiB after\n"
            f"  provider descriptors: {result['provider_fds']['before']} before, "
            f"{result['provider_fds']['after']} after\n"
            f"  reclaimed: {'yes' if not any(result['reclaimed'].values()) else 'NO'}"
        )
        for problem in problems:
            print(f"FAIL: {problem}")
    return 1 if problems and args.strict else 0


if __name__ == "__main__":
    raise SystemExit(main())
