"""The whole confidential task flow under ``sim``, against its peers, in one run.

    .venv/bin/python bench/e2e.py                    # 15 trivial tasks, then 1 GiB through
    .venv/bin/python bench/e2e.py --runs 30 --size 256M
    .venv/bin/python bench/e2e.py --skip-trivial --seal-rounds 5 --channel-rounds 3
    .venv/bin/python bench/e2e.py --skip-throughput --profile

1. **Trivial task** (DESIGN.md section 7: at most 150 ms added per task). A spec whose workload
   is ``/bin/sh -c true`` runs through the whole flow on a warm in-process provider (image
   built, trusted-file hash cache warm, HTTP on loopback): create, launch and attest, verify
   the quote, seal and send the (empty) input manifest, start, wait, fetch and verify the
   receipt and outputs, delete. Its peer is the same command in bare ``bwrap``. The medians are
   compared, and each flow is broken down into phases (server-side state changes and
   client-side steps) to show where the time goes. The in-enclave agent's Python start-up is
   also timed alone, as the sandbox sees it (no bytecode cache) and with one.
2. **1 GiB through the HTTP channel** (target: at least 50% of sealing throughput). A
   passthrough spec (``cp inputs/x outputs/x``) moves the input (on ``/dev/shm``) through the
   flow, to a provider in its own process (``golem-graphene provider serve``, as deployed, so
   requestor and provider each have an event loop and the machine's cores are shared as they
   would be). Per task, the upload (seal to ``E`` while streaming over HTTP) and the fetch
   (download, check the ciphertext and plaintext digests, decrypt) are timed; the enclave's
   part between them is printed but not counted. The channel rate is ``2 * size / (upload +
   fetch)``. The peer is :func:`golem_graphene.sealing.age.encrypt_file` of the same file
   alone (``encrypt_file`` in process, the library call only).

   Both are noisy on a small VM: writing to freshly allocated memory can be several times
   slower than reusing memory just freed (the host faults the pages in), and other load moves
   single runs. So, as ``bench/seal.py`` does: the peer and the channel each get an untimed
   warm-up first (``--channel-warmup``), then timed rounds alternate (``--seal-rounds``,
   ``--channel-rounds``: seal, channel, seal, ...), and every timed step starts right after
   the previous round's output of that step was deleted (the peer's sealed file before
   sealing; the previous task on the provider before an upload; the previous fetched output
   before a fetch) and the machine is idle again (the kernel goes on freeing what was deleted
   for a while, and after ``done`` the provider removes the enclave's folder: neither is the
   channel's cost). Each round is printed; the figures and the ratio are medians over the
   rounds. How many CPUs the machine kept busy during each step is printed too (at the CPU
   count, the step was CPU-bound), and the user CPU time other processes used during the
   timed steps (``/proc/stat`` minus this process tree, the provider and its enclaves
   included) shows whether other load may have moved them.

Figures are printed (``--json`` for one object on stdout), never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import pstats
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

# The tests' container image of this host's shell (tests/_test_images.py): a spec names an image.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _test_images import SHELL_TOOLS, shell_image

from golem_graphene._logging import configure_logging
from golem_graphene.host.image import EnclaveImage, build_image
from golem_graphene.host.runners import SimRunner
from golem_graphene.protocol.messages import TaskEvent
from golem_graphene.protocol.names import TaskState
from golem_graphene.protocol.spec import TaskSpec, parse_size, spec_digest
from golem_graphene.provider.config import ProviderConfig
from golem_graphene.provider.engine import image_key
from golem_graphene.provider.lifecycle import Task
from golem_graphene.provider.server import ProviderServer
from golem_graphene.requestor.client import AttestedTask, Requestor, RequestorPolicy
from golem_graphene.sealing.age import encrypt_file
from golem_graphene.sealing.keys import X25519Identity

STANDBY_TARGET_MS = 60.0  # a trivial task with a standby enclave, over bare bwrap
ON_DEMAND_TARGET_MS = 40.0  # the same with the enclave launched for the task (native agent)
THROUGHPUT_TARGET = 0.5
MIB = 1 << 20

TRIVIAL_SPEC = """\
name = "bench-trivial"
description = "The trivial task: /bin/sh -c true"

[enclave]
image = "{image}"
args = ["-c", "true"]
enclave_size = "256M"
max_threads = 4

[outputs]
files = ["out"]

[limits]
wall_seconds = 60
"""

PASSTHROUGH_SPEC = """\
name = "bench-passthrough"
description = "Copy the input to the output, inside the enclave"

[enclave]
image = "{image}"
args = ["-c", "cp inputs/x outputs/x"]
enclave_size = "1G"
max_threads = 4

[[inputs]]
name = "x"
max_size = "{size}"

[outputs]
files = ["x"]

[limits]
wall_seconds = 3600
memory = "256M"
output_size = "{size}"
"""


# --- set-up ---------------------------------------------------------------------------------------


def write_spec(root: Path, name: str, text: str) -> Path:
    """A spec folder: ``text`` naming, where it says ``{image}``, a container image of this
    host's ``/bin/sh``, ``cp`` and their libraries (the tests' shell image) beside it."""
    spec = root / name
    spec.mkdir(parents=True)
    reference = shell_image(spec, tools=(*SHELL_TOOLS, "/usr/bin/cp"))
    (spec / "task.toml").write_text(text.replace("{image}", reference))
    return spec


def install(image: EnclaveImage, data_dir: Path, spec: Path) -> None:
    """Link a built image where the provider looks for it (as ``TaskEngine.image_for``)."""
    link = data_dir / "images" / f"{TaskSpec.from_path(spec).name}-{spec_digest(spec)[:16]}"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(image.directory.resolve())


class Marks:
    """Server-side state changes of each task, with their times."""

    def __init__(self) -> None:
        self.times: dict[str, dict[str, float]] = defaultdict(dict)

    def attach(self, server: ProviderServer) -> None:
        store = server.engine.store
        transition = store.transition

        async def timed(task: Task, state: TaskState, **kw: Any) -> None:
            self.times[task.task_id][state.value] = time.perf_counter()
            await transition(task, state, **kw)

        store.transition = timed  # type: ignore[method-assign]


@contextlib.asynccontextmanager
async def provider(
    work: Path, runner: SimRunner, specs: Path, *, warm_enclaves: int = 1
) -> AsyncIterator[ProviderServer]:
    config = ProviderConfig.model_validate(
        {
            "bind": "127.0.0.1",
            "port": 0,
            "data_dir": str(work / "provider"),
            "specs_dir": str(specs),
            "auth": {"open": True},
            "limits": {"max_input_bytes_per_task": 64 << 30},
            "warm_enclaves": warm_enclaves,
        }
    )
    async with ProviderServer(config, runner) as server:
        yield server


# --- statistics -----------------------------------------------------------------------------------


def ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": statistics.median(values) * 1000,
        "mean_ms": statistics.fmean(values) * 1000,
        "p90_ms": ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))] * 1000,
        "min_ms": ordered[0] * 1000,
    }


def say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


# --- 1. the trivial task ------------------------------------------------------------------------


async def one_trivial(requestor: Requestor, spec: Path, out: Path) -> dict[str, float]:
    """One whole flow; returns the client-side step boundaries (perf_counter)."""
    t: dict[str, float] = {"begin": time.perf_counter()}
    created = await requestor.create(spec)
    t["created"] = time.perf_counter()
    task = await requestor.attest(created)
    t["attested"] = time.perf_counter()
    await requestor.send_inputs(task, {})
    t["inputs_sent"] = time.perf_counter()
    await requestor.start(task)
    t["started"] = time.perf_counter()
    await requestor.wait(task)
    t["waited"] = time.perf_counter()
    await requestor.fetch(task, out)
    t["fetched"] = time.perf_counter()
    await requestor.channel.delete(task.ref)
    t["end"] = time.perf_counter()
    t["task_id"] = created.ref.task_id  # type: ignore[assignment]
    return t


PHASES = [
    ("create (HTTP)", "c:begin", "c:created"),
    ("launch + agent start + quote", "s:launching", "s:attested"),
    ("evidence fetch + quote verify", "s:attested", "c:attested"),
    ("seal + send manifest", "c:attested", "c:inputs_sent"),
    ("start -> agent checks inputs", "c:inputs_sent", "s:running"),
    ("workload (sh -c true)", "s:running", "s:sealing"),
    ("seal outputs + sign receipt", "s:sealing", "s:done"),
    ("done -> requestor notified", "s:done", "c:waited"),
    ("fetch: download + verify", "c:waited", "c:fetched"),
    ("delete (HTTP)", "c:fetched", "c:end"),
]


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
    cmd += ["--proc", "/proc", "--dev", "/dev", "--unshare-all", "--die-with-parent"]
    return [*cmd, "--", "/bin/sh", "-c", "true"]


async def bare(cmd: list[str]) -> float:
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    if await proc.wait() != 0:
        raise SystemExit(f"bare bwrap failed: {' '.join(cmd)}")
    return time.perf_counter() - start


MODES = {
    "standby": "a standby enclave ready (warm_enclaves = 1, the default)",
    "on_demand": "enclave launched per task (warm_enclaves = 0)",
}


async def trivial_series(
    args: argparse.Namespace, work: Path, runner: SimRunner, spec: Path, image: EnclaveImage
) -> dict[str, Any]:
    """The trivial flow ``args.runs`` times in each mode, interleaved with bare ``bwrap``."""
    measurement = image.measurement("sim")
    assert measurement is not None
    key = image_key(TaskSpec.from_path(spec).name, spec_digest(spec))
    identity = X25519Identity.generate()
    cmd = bare_command()
    profiler = cProfile.Profile() if args.profile else None
    out: dict[str, Any] = {}
    for mode in MODES:
        marks = Marks()
        flows: list[float] = []
        bare_times: list[float] = []
        phases: dict[str, list[float]] = defaultdict(list)
        warm = 1 if mode == "standby" else 0
        async with provider(work / mode, runner, spec.parent, warm_enclaves=warm) as server:
            install(image, server.config.data_dir, spec)
            marks.attach(server)
            policy = RequestorPolicy(
                trusted_simulation_roots=(runner.platform.root_fingerprint,),
                expected_mrenclave=(measurement.hex(),),
            )
            async with Requestor(server.url, identity=identity, policy=policy) as requestor:
                for i in range(args.warmup + args.runs):
                    # The standby enclave the previous task's take started (untimed: on a
                    # provider that is not saturated it is ready by the next task).
                    if (
                        warm
                        and i >= args.warmup
                        and not await server.engine.pool.wait_ready(key, 60)
                    ):
                        raise SystemExit("no standby enclave became ready in 60 s")
                    await bare(cmd)  # interleaved with the flows: same machine state
                    if profiler is not None and i >= args.warmup and warm:
                        profiler.enable()
                    t = await one_trivial(requestor, spec, work / f"out-{mode}" / str(i))
                    if profiler is not None:
                        profiler.disable()
                    b = await bare(cmd)
                    if i < args.warmup:
                        continue
                    bare_times.append(b)
                    flows.append(t["end"] - t["begin"])
                    points = {f"c:{k}": v for k, v in t.items() if k != "task_id"}
                    points.update({f"s:{k}": v for k, v in marks.times[str(t["task_id"])].items()})
                    for label, a, z in PHASES:
                        if a in points and z in points:
                            phases[label].append(points[z] - points[a])
        flow, peer = ms(flows), ms(bare_times)
        out[mode] = {
            "flow": flow,
            "bare_bwrap": peer,
            "added_ms": flow["median_ms"] - peer["median_ms"],
            "phases_median_ms": {k: statistics.median(v) * 1000 for k, v in phases.items()},
        }
    if profiler is not None:
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(25)
        out["profile"] = stream.getvalue()
    return out


async def trivial(args: argparse.Namespace, work: Path, runner: SimRunner) -> dict[str, Any]:
    specs = work / "specs"
    spec = write_spec(specs, "bench-trivial", TRIVIAL_SPEC)
    say("building the trivial image ...")
    image = build_image(spec, work / "images" / "trivial", key_path=work / "key.pem")
    series = await trivial_series(args, work / "trivial", runner, spec, image)
    standby, on_demand = series["standby"]["added_ms"], series["on_demand"]["added_ms"]
    return {
        "runs": args.runs,
        **series,
        "added_ms": standby,
        "target_ms": STANDBY_TARGET_MS,
        "on_demand_target_ms": ON_DEMAND_TARGET_MS,
        "met": standby <= STANDBY_TARGET_MS and on_demand <= ON_DEMAND_TARGET_MS,
    }


# --- 2. 1 GiB through the HTTP channel ----------------------------------------------------------


def make_input(path: Path, size: int) -> None:
    block = os.urandom(4 * MIB)
    with open(path, "wb") as f:
        written = 0
        while written < size:
            n = min(len(block), size - written)
            f.write(block[:n])
            written += n


@contextlib.asynccontextmanager
async def provider_process(work: Path, specs: Path) -> AsyncIterator[tuple[str, str]]:
    """``golem-graphene provider serve`` in its own process (as deployed: requestor and
    provider do not share a CPU's event loop); yields its URL and simulation root."""
    work.mkdir(parents=True)
    config = work / "provider.toml"
    config.write_text(
        f'bind = "127.0.0.1"\nport = 0\ndata_dir = "{work / "provider"}"\n'
        f'specs_dir = "{specs}"\n[auth]\nopen = true\n'
        f"[limits]\nmax_input_bytes_per_task = {64 << 30}\n"
    )
    log = open(work / "provider.log", "wb")  # noqa: SIM115 - closed below
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "golem_graphene",
        "provider",
        "serve",
        "--config",
        str(config),
        stdout=log,
        stderr=log,
    )
    try:
        url = ""
        for _ in range(600):
            text = (work / "provider.log").read_text(errors="replace")
            if "listening on " in text:
                url = text.split("listening on ", 1)[1].split()[0]
                break
            if proc.returncode is not None:
                raise SystemExit(f"the provider exited: {text[-2000:]}")
            await asyncio.sleep(0.1)
        # The sim runner's warning names the root: "... root_fingerprint=HEX ..." in the log.
        found = re.search(r"root_fingerprint=([0-9a-f]{64})", text)
        if found is None:
            raise SystemExit(f"the provider named no simulation root: {text[-2000:]}")
        root = found.group(1)
        yield url, root
    finally:
        proc.terminate()
        await proc.wait()
        log.close()


def _stat(pid: int | str) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int | str = "self") -> tuple[float, float]:
    """User and system CPU time of a process and of the children it has waited for."""
    utime, stime, cutime, cstime = (int(x) for x in _stat(pid)[11:15])
    tick = os.sysconf("SC_CLK_TCK")
    return (utime + cutime) / tick, (stime + cstime) / tick


def tree_cpu_seconds(root: int) -> tuple[float, float]:
    """:func:`cpu_seconds` of ``root`` and of its live descendants (the provider's enclaves,
    which may be reaped later, or by a process of the tree other than the provider)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                parents[int(entry.name)] = int(_stat(entry.name)[1])
    tree, grown = {root}, True
    while grown:  # pids wrap around: a child may have a lower pid than its parent
        before = len(tree)
        tree.update(pid for pid, parent in parents.items() if parent in tree)
        grown = len(tree) > before
    user = system = 0.0
    for pid in tree:
        with contextlib.suppress(OSError, IndexError):
            u, s = cpu_seconds(pid)
            user, system = user + u, system + s
    return user, system


def machine_cpu_seconds() -> tuple[float, float, float]:
    """User, kernel (system, irq, softirq) and steal time of the whole machine (/proc/stat)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice) / tick, (system + irq + softirq) / tick, steal / tick


class Meter:
    """Times steps and watches the machine meanwhile: per step, how many CPUs were busy (at
    ``os.cpu_count()`` the step was CPU-bound); over all steps, the user CPU time of processes
    outside this process tree (the sign of interference; the enclaves run between the timed
    steps), kernel time not charged to the tree (softirq work, kernel threads) and the time
    the hypervisor took (steal)."""

    def __init__(self) -> None:
        self.elapsed = self.others_user = self.kernel = self.steal = 0.0

    @contextlib.contextmanager
    def step(self) -> Iterator[dict[str, float]]:
        ours = tree_cpu_seconds(os.getpid())
        machine, start = machine_cpu_seconds(), time.perf_counter()
        out: dict[str, float] = {}
        yield out
        end, machine_end = time.perf_counter(), machine_cpu_seconds()
        ours_end = tree_cpu_seconds(os.getpid())
        out["seconds"] = end - start
        out["busy_cpus"] = (sum(machine_end) - sum(machine)) / (end - start)
        self.elapsed += end - start
        self.others_user += machine_end[0] - machine[0] - (ours_end[0] - ours[0])
        self.kernel += machine_end[1] - machine[1] - (ours_end[1] - ours[1])
        self.steal += machine_end[2] - machine[2]

    def summary(self) -> dict[str, float]:
        return {
            "timed_s": self.elapsed,
            "others_user_s": self.others_user,
            "others_user_share": self.others_user / (self.elapsed * (os.cpu_count() or 1)),
            "kernel_not_charged_s": self.kernel,
            "steal_s": self.steal,
        }


def settle(quiet: float = 0.1, limit: float = 10.0) -> float:
    """Wait until the machine is idle (less than ``quiet`` CPUs busy over 0.2 s, at most
    ``limit`` s): freeing what was just deleted goes on in the kernel for a while, and after
    ``done`` the provider still removes the enclave's folder. Returns the seconds waited."""
    start = time.perf_counter()
    before = sum(machine_cpu_seconds())
    while time.perf_counter() - start < limit:
        time.sleep(0.2)
        now = sum(machine_cpu_seconds())
        if now - before < quiet * 0.2:
            break
        before = now
    return time.perf_counter() - start


def round_order(seal_rounds: int, channel_rounds: int) -> list[str]:
    """Timed rounds, alternating: seal, channel, seal, channel, seal, ..."""
    order: list[str] = []
    seals, channels = seal_rounds, channel_rounds
    while seals or channels:
        if seals:
            order.append("seal")
            seals -= 1
        if channels:
            order.append("channel")
            channels -= 1
    return order


def seal_once(source: Path, dest: Path, identity: X25519Identity, meter: Meter) -> dict[str, float]:
    dest.unlink(missing_ok=True)  # freed right before the run (see the module docstring)
    settle()
    with meter.step() as step:
        encrypt_file(source, dest, [identity.recipient()])
    return step


class ChannelRounds:
    """Whole tasks through the provider process, one per round. Each round frees the previous
    round's memory right before the step that will use as much: the previous task on the
    provider before the upload, the previous fetched output before the fetch."""

    def __init__(
        self, requestor: Requestor, spec: Path, source: Path, work: Path, meter: Meter
    ) -> None:
        self.requestor = requestor
        self.meter = meter
        self.spec = spec
        self.source = source
        self.work = work
        self.previous: AttestedTask | None = None
        self.previous_out: Path | None = None
        self.count = 0

    async def run(self) -> dict[str, float]:
        requestor = self.requestor
        task = await requestor.attest(await requestor.create(self.spec))
        seen: dict[str, float] = {}

        def note(event: TaskEvent) -> None:
            seen.setdefault(event.state.value, time.perf_counter())

        if self.previous is not None:
            await requestor.channel.delete(self.previous.ref)
            self.previous = None
        settle()
        with self.meter.step() as upload:
            await requestor.send_inputs(task, {"x": self.source})
        t1 = time.perf_counter()
        await requestor.start(task)
        await requestor.wait(task, timeout=3600, on_event=note)
        t2 = time.perf_counter()
        if self.previous_out is not None:
            shutil.rmtree(self.previous_out)
        settled = settle()
        out = self.work / f"throughput-out-{self.count}"
        self.count += 1
        with self.meter.step() as fetch:
            result = await requestor.fetch(task, out)
        self.previous, self.previous_out = task, out
        running, sealing = seen.get("running", t1), seen.get("sealing", t2)
        return {
            "upload": upload["seconds"],
            "enclave": t2 - t1,
            "enclave: start -> running (open input)": running - t1,
            "enclave: running -> sealing (cp)": sealing - running,
            "enclave: sealing -> done (seal output)": seen.get("done", t2) - sealing,
            "settling before the fetch (untimed)": settled,
            "fetch": fetch["seconds"],
            "busy: upload": upload["busy_cpus"],
            "busy: fetch": fetch["busy_cpus"],
            "output_matches_input": float(_same_file(result.outputs["x"], self.source)),
        }

    async def close(self) -> None:
        if self.previous is not None:
            await self.requestor.channel.delete(self.previous.ref)
        if self.previous_out is not None:
            shutil.rmtree(self.previous_out, ignore_errors=True)


async def throughput(args: argparse.Namespace, work: Path, runner: SimRunner) -> dict[str, Any]:
    size = parse_size(args.size)
    specs = work / "specs"
    spec = write_spec(specs, "bench-passthrough", PASSTHROUGH_SPEC.replace("{size}", str(size)))
    say("building the passthrough image ...")
    image = build_image(spec, work / "images" / "passthrough", key_path=work / "key.pem")
    measurement = image.measurement("sim")
    assert measurement is not None
    source = work / "input.bin"
    say(f"writing {size / MIB:.0f} MiB of random input to {source} ...")
    make_input(source, size)
    identity = X25519Identity.generate()
    sealed = work / "sealed-alone.age"
    meter = Meter()
    seal_once(source, sealed, identity, Meter())  # untimed warm-up
    seal_times: list[float] = []
    seal_busy: list[float] = []
    channel: list[dict[str, float]] = []
    async with provider_process(work / "throughput", specs) as (url, root):
        install(image, work / "throughput" / "provider", spec)
        policy = RequestorPolicy(
            trusted_simulation_roots=(root,), expected_mrenclave=(measurement.hex(),)
        )
        async with Requestor(url, identity=identity, policy=policy) as requestor:
            rounds = ChannelRounds(requestor, spec, source, work, meter)
            try:
                for _ in range(args.channel_warmup):
                    r = await rounds.run()
                    say(
                        f"   warm-up: upload {r['upload']:.2f} s, fetch {r['fetch']:.2f} s"
                        " (untimed)"
                    )
                for kind in round_order(args.seal_rounds, args.channel_rounds):
                    if kind == "seal":
                        step = seal_once(source, sealed, identity, meter)
                        seal_times.append(step["seconds"])
                        seal_busy.append(step["busy_cpus"])
                        say(
                            f"   seal alone: {seal_times[-1]:.2f} s, "
                            f"{size / MIB / seal_times[-1]:.0f} MiB/s"
                        )
                    else:
                        r = await rounds.run()
                        channel.append(r)
                        moved = 2 * size / MIB / (r["upload"] + r["fetch"])
                        say(
                            f"   channel:    upload {r['upload']:.2f} s, fetch {r['fetch']:.2f} s,"
                            f" {moved:.0f} MiB/s both ways (enclave {r['enclave']:.2f} s)"
                        )
            finally:
                await rounds.close()
    sealed.unlink(missing_ok=True)
    result = throughput_result(size, seal_times, channel)
    result["busy_cpus"]["seal_alone"] = statistics.median(seal_busy)
    result["machine_during_timed_steps"] = meter.summary()
    return result


def throughput_result(
    size: int, seal_times: list[float], channel: list[dict[str, float]]
) -> dict[str, Any]:
    """Medians over the rounds; the ratio is the median channel rate over the median seal rate."""

    def median(key: str) -> float:
        return statistics.median(r[key] for r in channel)

    seal_alone = statistics.median(seal_times)
    both = statistics.median(r["upload"] + r["fetch"] for r in channel)
    upload, fetch = median("upload"), median("fetch")
    rate = {
        "seal_alone": size / seal_alone / MIB,
        "upload (seal + HTTP)": size / upload / MIB,
        "fetch (HTTP + verify + open)": size / fetch / MIB,
        "input and output through the channel": 2 * size / both / MIB,
    }
    channel_ratio = rate["input and output through the channel"] / rate["seal_alone"]
    seconds = {"seal_alone": seal_alone}
    seconds.update(
        {
            k: median(k)
            for k in channel[0]
            if k != "output_matches_input" and not k.startswith("busy: ")
        }
    )
    return {
        "size_bytes": size,
        "output_matches_input": all(r["output_matches_input"] for r in channel),
        "rounds": {
            "seal_alone_s": seal_times,
            "upload_s": [r["upload"] for r in channel],
            "fetch_s": [r["fetch"] for r in channel],
            "enclave_s": [r["enclave"] for r in channel],
        },
        "seconds": seconds,
        "mib_per_s": rate,
        # CPUs busy (the whole machine) during each step: at os.cpu_count(), it was CPU-bound.
        "busy_cpus": {k[6:]: median(k) for k in channel[0] if k.startswith("busy: ")},
        "ratio_upload_to_sealing": rate["upload (seal + HTTP)"] / rate["seal_alone"],
        "ratio_channel_to_sealing": channel_ratio,
        "target_ratio": THROUGHPUT_TARGET,
        "met": channel_ratio >= THROUGHPUT_TARGET,
    }


def _same_file(a: Path, b: Path) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(4 * MIB), fb.read(4 * MIB)
            if x != y:
                return False
            if not x:
                return True


# --- report -------------------------------------------------------------------------------------


def report(result: dict[str, Any]) -> None:
    if "trivial" in result:
        r = result["trivial"]
        for mode, title in MODES.items():
            m = r[mode]
            say("")
            say(f"== trivial task, {title}: {r['runs']} runs (median; p90 in brackets)")
            flow = m["flow"]
            say(f"   whole flow        {flow['median_ms']:8.1f} ms  [{flow['p90_ms']:.1f}]")
            say(
                f"   bare bwrap        {m['bare_bwrap']['median_ms']:8.1f} ms  "
                f"[{m['bare_bwrap']['p90_ms']:.1f}]"
            )
            say(f"   added per task    {m['added_ms']:8.1f} ms")
            say("   where the flow's time goes (median per phase):")
            for label, value in m["phases_median_ms"].items():
                say(f"     {label:<34} {value:8.1f} ms")
        standby_ok = r["added_ms"] <= r["target_ms"]
        demand_ok = r["on_demand"]["added_ms"] <= r["on_demand_target_ms"]
        say("")
        say(
            f"   added per task with a standby enclave: {r['added_ms']:.1f} ms (target <= "
            f"{r['target_ms']:.0f} ms: {'met' if standby_ok else 'MISSED'}); launched on demand: "
            f"{r['on_demand']['added_ms']:.1f} ms (target <= {r['on_demand_target_ms']:.0f} ms: "
            f"{'met' if demand_ok else 'MISSED'})"
        )
        if "profile" in r:
            say("   cProfile of the in-process side (requestor + provider), standby mode:")
            say(r["profile"])
    if "throughput" in result:
        r = result["throughput"]
        say("")
        say(
            f"== {r['size_bytes'] / MIB:.0f} MiB through the HTTP channel "
            f"(medians of {len(r['rounds']['seal_alone_s'])} seal and "
            f"{len(r['rounds']['upload_s'])} channel rounds)"
        )
        for label, value in r["mib_per_s"].items():
            say(f"   {label:<40} {value:8.1f} MiB/s")
        for label, value in r["seconds"].items():
            say(f"   {label:<40} {value:8.2f} s")
        busy = ", ".join(f"{k} {v:.2f}" for k, v in r["busy_cpus"].items())
        say(f"   CPUs busy (whole machine, of {result['cpus']}): {busy}")
        for label, values in r["rounds"].items():
            say(f"   rounds: {label:<32} " + " ".join(f"{v:6.2f}" for v in values))
        verdict = "met" if r["met"] else "MISSED"
        say(
            f"   channel / sealing alone: {r['ratio_channel_to_sealing']:.2f} "
            f"(upload alone {r['ratio_upload_to_sealing']:.2f}; target >= "
            f"{r['target_ratio']:.2f}: {verdict}); output == input: {r['output_matches_input']}"
        )
        other = r["machine_during_timed_steps"]
        say(
            f"   during the {other['timed_s']:.0f} s of timed steps, other processes used "
            f"{max(0.0, other['others_user_s']):.1f} s of user CPU "
            f"({max(0.0, 100 * other['others_user_share']):.0f}%"
            f" of {result['cpus']} CPUs); kernel time not charged to the bench "
            f"{other['kernel_not_charged_s']:.1f} s, steal {other['steal_s']:.1f} s"
        )


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    base = Path(args.workdir) if args.workdir else None
    work = Path(tempfile.mkdtemp(prefix="golem-graphene-bench-e2e-", dir=base))
    try:
        runner = SimRunner(work / "runner")
        result: dict[str, Any] = {"load_average": os.getloadavg(), "cpus": os.cpu_count()}
        if not args.skip_trivial:
            result["trivial"] = await trivial(args, work, runner)
        if not args.skip_throughput:
            result["throughput"] = await throughput(args, work, runner)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="trivial tasks timed (default 15)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed trivial tasks first")
    parser.add_argument("--size", default="1G", help="bytes through the channel (default 1G)")
    parser.add_argument(
        "--workdir",
        default="/dev/shm" if Path("/dev/shm").is_dir() else None,
        help="where the provider, inputs and outputs live (default /dev/shm, a tmpfs)",
    )
    parser.add_argument(
        "--seal-rounds", type=int, default=3, help="timed rounds of sealing alone (default 3)"
    )
    parser.add_argument(
        "--channel-rounds", type=int, default=2, help="timed tasks through the channel (default 2)"
    )
    parser.add_argument(
        "--channel-warmup", type=int, default=1, help="untimed tasks through the channel first"
    )
    parser.add_argument("--skip-trivial", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--profile", action="store_true", help="cProfile the trivial flows")
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    args = parser.parse_args()
    if min(args.seal_rounds, args.channel_rounds) < 1 or args.channel_warmup < 0:
        parser.error("--seal-rounds and --channel-rounds need at least 1 round")
    configure_logging(level="WARNING")
    result = asyncio.run(main_async(args))
    report(result)
    if args.json:
        result.get("trivial", {}).pop("profile", None)
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
