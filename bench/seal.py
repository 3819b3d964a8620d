"""Seal and open a large file on tmpfs with golem-graphene and with the ``age`` CLI, side by side.

    .venv/bin/python bench/seal.py                       # 1 GiB, 3 interleaved rounds
    .venv/bin/python bench/seal.py --size 4GiB
    .venv/bin/python bench/seal.py --check-rss-growth    # 1 GiB and 4 GiB, compare our peak RSS

Each operation runs in its own child process. Peak RSS is the child's ``VmHWM`` (the high-water
mark of its own address space): our child reads it from ``/proc/self/status`` when done; for
age it is sampled from ``/proc/<pid>/status`` every few milliseconds while it runs (age's memory
is flat, so the last sample is its peak). ``ru_maxrss`` is not used: after ``vfork``+``exec`` it
also counts the parent's (the benchmark's) resident set. Our child also reports the time of the
library call itself (``encrypt_file``/``decrypt_file``), which is what the agent and the
requestor pay in process; the wall time of the child, which adds interpreter start-up and
imports, is printed beside it. age's time is its wall time (its start-up is a few milliseconds).
Runs alternate between the two tools and the figures are medians over the rounds (the best round
of each is printed too), because tmpfs page allocation in a VM and other load on the machine
make single runs noisy. Every run starts right after the previous output was deleted, so both
tools find the same amount of freshly freed memory.

Targets (DESIGN.md section 7): >= 1.5x age's throughput both ways, peak RSS <= 64 MiB, and peak
RSS at 4 GiB no larger than at 1 GiB. ``--strict`` turns a missed target into exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

MIB = 1024 * 1024
GIB = 1024 * MIB
RATIO_TARGET = 1.5
RSS_TARGET_MIB = 64.0
RSS_GROWTH_TOLERANCE_MIB = 1.0  # page-granular noise between runs

CHILD = r"""
import json, sys, time
from golem_graphene.sealing import X25519Identity, decrypt_file, encrypt_file
op, key, src, dst = sys.argv[1:5]
identity = X25519Identity.from_string(open(key).read().split()[-1])
start = time.perf_counter()
if op == "seal":
    n = encrypt_file(src, dst, [identity.recipient()], overwrite=True)
else:
    n = decrypt_file(src, dst, [identity], overwrite=True)
seconds = time.perf_counter() - start
status = open("/proc/self/status").read()
hwm_kib = int(status.split("VmHWM:")[1].split()[0])
print(json.dumps({"bytes": n, "seconds": seconds, "vmhwm_kib": hwm_kib}))
"""


@dataclass
class Sample:
    seconds: float  # the operation itself (ours: library call; age: wall)
    wall: float  # child process wall time
    rss_mib: float  # peak RSS of the child


@dataclass
class Series:
    samples: list[Sample] = field(default_factory=list)

    def mib_s(self, size: int, *, wall: bool = False) -> float:
        return size / MIB / statistics.median(s.wall if wall else s.seconds for s in self.samples)

    def best_mib_s(self, size: int) -> float:
        return size / MIB / min(s.seconds for s in self.samples)

    @property
    def rss_mib(self) -> float:
        return max(s.rss_mib for s in self.samples)


def parse_size(text: str) -> int:
    units = {"kib": 1024, "mib": MIB, "gib": GIB, "k": 1024, "m": MIB, "g": GIB}
    lower = text.strip().lower()
    for suffix, factor in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if lower.endswith(suffix):
            return int(float(lower[: -len(suffix)]) * factor)
    return int(lower)


def _vmhwm_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def run_child(argv: list[str]) -> tuple[float, float, bytes]:
    """Run ``argv``; returns (wall seconds, sampled peak RSS MiB, stdout). Raises on failure.

    The child's output goes to temporary files so that polling never blocks on a full pipe.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err)
        hwm = 0
        while True:
            pid, status = os.waitpid(proc.pid, os.WNOHANG)
            if pid:
                break
            sample = _vmhwm_kib(proc.pid)
            if sample:
                hwm = max(hwm, sample)
            time.sleep(0.005)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            message = err.read().decode(errors="replace")
            raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {message}")
        return wall, hwm / 1024, out.read()


def ours(op: str, key: Path, src: Path, dst: Path) -> Sample:
    wall, _, out = run_child([sys.executable, "-c", CHILD, op, str(key), str(src), str(dst)])
    report = json.loads(out)
    return Sample(report["seconds"], wall, report["vmhwm_kib"] / 1024)


def age(age_bin: str, args: list[str]) -> Sample:
    wall, rss, _ = run_child([age_bin, *args])
    return Sample(wall, wall, rss)


def make_input(path: Path, size: int) -> None:
    block = os.urandom(16 * MIB)
    with path.open("wb") as f:
        left = size
        while left:
            # Fresh random bytes per block would dominate set-up time; a random block repeated is
            # as good for a cipher (nothing here compresses or deduplicates).
            n = f.write(block[: min(left, len(block))])
            left -= n


def same_content(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            x, y = fa.read(8 * MIB), fb.read(8 * MIB)
            if x != y:
                return False
            if not x:
                return True


@dataclass
class Result:
    size: int
    seal_ours: Series
    seal_age: Series
    open_ours: Series
    open_age: Series


def bench(size: int, rounds: int, workdir: Path, age_bin: str, keygen_bin: str) -> Result:
    key = workdir / "key.txt"
    key.unlink(missing_ok=True)
    subprocess.run([keygen_bin, "-o", str(key)], check=True, capture_output=True)
    recipient = subprocess.run(
        [keygen_bin, "-y", str(key)], check=True, capture_output=True, text=True
    ).stdout.strip()
    plain = workdir / "plain.bin"
    print(f"generating {size / GIB:.2f} GiB input in {workdir} ...", flush=True)
    make_input(plain, size)
    result = Result(size, Series(), Series(), Series(), Series())
    sealed = workdir / "sealed.age"  # made by age once; both tools open this same file
    subprocess.run([age_bin, "-r", recipient, "-o", str(sealed), str(plain)], check=True)
    out = workdir / "out"
    # Fairness on tmpfs: freshly freed pages are cheap to reuse, pages the VM has already handed
    # back to the host are expensive to fault in again. So every run starts right after the
    # previous run's output (of about the same size) was deleted: all runs see the same state.
    # At most three copies of the input exist at any time (input, sealed file, one output).

    def fresh_output() -> Path:
        out.unlink(missing_ok=True)
        return out

    def seal_ours() -> None:
        result.seal_ours.samples.append(ours("seal", key, plain, fresh_output()))

    def seal_age() -> None:
        dst = fresh_output()
        result.seal_age.samples.append(age(age_bin, ["-r", recipient, "-o", str(dst), str(plain)]))

    def open_ours() -> None:
        result.open_ours.samples.append(ours("open", key, sealed, fresh_output()))

    def open_age() -> None:
        dst = fresh_output()
        result.open_age.samples.append(
            age(age_bin, ["-d", "-i", str(key), "-o", str(dst), str(sealed)])
        )

    # Untimed warm-up, then alternate who goes first.
    seal_ours()
    seal_age()
    result.seal_age.samples.clear()
    result.seal_ours.samples.clear()
    for i in range(rounds):
        seals = (seal_ours, seal_age) if i % 2 == 0 else (seal_age, seal_ours)
        opens = (open_ours, open_age) if i % 2 == 0 else (open_age, open_ours)
        for run in (*seals, *opens):
            run()
            if i == 0 and run in (open_ours, open_age):
                assert same_content(out, plain), f"{run.__name__}: output differs from input"
        print(f"  round {i + 1}/{rounds} done", flush=True)
    # age must open our file too (checked once, outside the timing).
    sealed.unlink()
    ours("seal", key, plain, fresh_output())
    out.rename(sealed)
    subprocess.run([age_bin, "-d", "-i", str(key), "-o", str(out), str(sealed)], check=True)
    assert same_content(out, plain), "age could not open our file"
    for path in (plain, sealed, out):
        path.unlink(missing_ok=True)
    return result


def report(r: Result) -> list[str]:
    """Print the figures; returns the list of missed targets."""
    size = r.size
    misses: list[str] = []
    print(f"\n== {size / GIB:.2f} GiB on tmpfs, median of {len(r.seal_ours.samples)} rounds ==")
    header = f"{'':8}{'ours MiB/s':>12}{'(wall)':>10}{'age MiB/s':>12}{'ratio':>8}"
    print(header + f"{'ours peak RSS':>16}{'age peak RSS':>15}")
    for name, mine, theirs in (
        ("seal", r.seal_ours, r.seal_age),
        ("open", r.open_ours, r.open_age),
    ):
        ratio = mine.mib_s(size) / theirs.mib_s(size)
        print(
            f"{name:8}{mine.mib_s(size):12.0f}{mine.mib_s(size, wall=True):10.0f}"
            f"{theirs.mib_s(size):12.0f}{ratio:7.2f}x"
            f"{mine.rss_mib:12.1f} MiB{theirs.rss_mib:11.1f} MiB"
        )
        if ratio < RATIO_TARGET:
            misses.append(f"{name}: {ratio:.2f}x age < {RATIO_TARGET}x")
        if mine.rss_mib > RSS_TARGET_MIB:
            misses.append(f"{name}: peak RSS {mine.rss_mib:.1f} MiB > {RSS_TARGET_MIB} MiB")
    wall_ratio_seal = r.seal_ours.mib_s(size, wall=True) / r.seal_age.mib_s(size)
    wall_ratio_open = r.open_ours.mib_s(size, wall=True) / r.open_age.mib_s(size)
    print(
        f"ratio with our interpreter start-up counted: seal {wall_ratio_seal:.2f}x, "
        f"open {wall_ratio_open:.2f}x"
    )
    # On a busy machine the fastest round of each tool is the least disturbed one.
    print(
        "best round: "
        + ", ".join(
            f"{name} ours {mine.best_mib_s(size):.0f} MiB/s age {theirs.best_mib_s(size):.0f}"
            f" MiB/s ({mine.best_mib_s(size) / theirs.best_mib_s(size):.2f}x)"
            for name, mine, theirs in (
                ("seal", r.seal_ours, r.seal_age),
                ("open", r.open_ours, r.open_age),
            )
        )
    )
    per_round = ", ".join(
        f"{name} ours {[round(s.seconds, 2) for s in mine.samples]} s"
        f" age {[round(s.seconds, 2) for s in theirs.samples]} s"
        for name, mine, theirs in (
            ("seal", r.seal_ours, r.seal_age),
            ("open", r.open_ours, r.open_age),
        )
    )
    print(f"per round: {per_round}")
    return misses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1GiB", help="input size (default 1GiB; e.g. 4GiB)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (default 3)")
    parser.add_argument("--dir", default="/dev/shm", help="tmpfs directory (default /dev/shm)")
    parser.add_argument(
        "--check-rss-growth",
        action="store_true",
        help="run at 1 GiB and 4 GiB and check that our peak RSS does not grow",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args()
    age_bin, keygen_bin = shutil.which("age"), shutil.which("age-keygen")
    if not age_bin or not keygen_bin:
        print("the age CLI is not installed (Debian package 'age')", file=sys.stderr)
        return 2
    sizes = [GIB, 4 * GIB] if args.check_rss_growth else [parse_size(args.size)]
    free = shutil.disk_usage(args.dir).free
    if free < 3.1 * max(sizes):
        print(f"{args.dir} has {free / GIB:.1f} GiB free; need ~3.1x the input", file=sys.stderr)
        return 2
    age_version = subprocess.run([age_bin, "--version"], capture_output=True, text=True)
    print(f"age {age_version.stdout.strip()}, {sys.executable}, {os.cpu_count()} CPUs")
    misses: list[str] = []
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="gg-bench-", dir=args.dir) as tmp:
        for size in sizes:
            results.append(bench(size, args.rounds, Path(tmp), age_bin, keygen_bin))
            misses += report(results[-1])
    if args.check_rss_growth:
        small, large = results
        for name, a, b in (
            ("seal", small.seal_ours, large.seal_ours),
            ("open", small.open_ours, large.open_ours),
        ):
            grew = b.rss_mib - a.rss_mib
            verdict = "OK" if grew <= RSS_GROWTH_TOLERANCE_MIB else "FAIL"
            print(
                f"{verdict}: {name} peak RSS 1 GiB {a.rss_mib:.1f} MiB -> 4 GiB {b.rss_mib:.1f} MiB"
            )
            if verdict == "FAIL":
                misses.append(f"{name}: peak RSS grew by {grew:.1f} MiB from 1 GiB to 4 GiB")
    print()
    for miss in misses:
        print(f"MISSED: {miss}")
    if not misses:
        print("OK: all targets met")
    return 1 if misses and args.strict else 0


if __name__ == "__main__":
    raise SystemExit(main())
