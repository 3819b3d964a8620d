"""Whole-process times of the ``golem-graphene`` command beside the ``age`` CLI, in one run.

    .venv/bin/python bench/cli.py                  # start-up cases (21 runs each) and 1 GiB
    .venv/bin/python bench/cli.py --runs 41 --size 256MiB
    .venv/bin/python bench/cli.py --skip-large     # start-up cases only

What a user waits for is the whole process: interpreter start-up, imports and the work. Each case
runs our command and its ``age`` counterpart alternately (so both see the same load on the
machine), each in a fresh child process, and prints the medians side by side with the ratio:

==========================  ==================================  ======================  ========
case                        ours                                age                     target
==========================  ==================================  ======================  ========
``--version``, ``--help``   ``golem-graphene --version``/...    ``age --version``/...   <= 60 ms
``keygen``                  ``golem-graphene keygen``           ``age-keygen``          <= 80 ms
seal / open one byte        ``seal -r R`` / ``open -i K``       ``age -r`` / ``age -d``  <= 80 ms
``verify-quote``            one real quote and collateral       (``age --version``)     <= 150 ms
seal / open 1 GiB, tmpfs    ``seal -o`` / ``open -o``           ``age -o``              >= 1.5x
==========================  ==================================  ======================  ========

The 1 GiB cases compare throughput (age's median time over ours). The console script is the one
installed beside this interpreter, run with bytecode caching on (as after ``pip install``, which
compiles it): ``PYTHONDONTWRITEBYTECODE`` is removed from the children's environment and every
case runs once before it is timed. Exit status 1 when a target is missed.

Beside the wall-clock medians the targets apply to, the median CPU time (user + system, all
threads) of our process is printed, with the load average: on a busy machine the wall times
grow with the load and the CPU times much less, so they tell a slower start-up from a busier
machine. The first row is the interpreter alone (``python -c pass``), without a target: the
part of every case that is this environment's (an editable install's finder, site-packages),
not the command's.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024
GIB = 1024 * MIB
REPO = Path(__file__).resolve().parents[1]
QUOTE = REPO / "tests" / "vectors" / "dcap" / "phala_sgx"


@dataclass(frozen=True)
class Case:
    """One comparison: our argv and age's, and the target on our median (ms) or the ratio."""

    name: str
    ours: list[str]
    age: list[str]
    max_ms: float | None = None
    min_ratio: float | None = None
    stdin: Path | None = None
    size: int = 0


def _parse_size(text: str) -> int:
    units = {"KiB": 1024, "MiB": MIB, "GiB": GIB, "": 1}
    for suffix, factor in units.items():
        if suffix and text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(text)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _time(argv: list[str], env: dict[str, str], stdin: Path | None) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, all threads) of one run of ``argv``."""
    with open(stdin or os.devnull, "rb") as src:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        result = subprocess.run(
            argv, stdin=src, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
        )
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {result.stderr.decode(errors='replace')}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return seconds, cpu


def _median(
    case: Case, runs: int, env: dict[str, str], before: Callable[[], None]
) -> tuple[float, float, float]:
    """Medians of our wall time, age's wall time and our CPU time."""
    ours: list[float] = []
    theirs: list[float] = []
    cpu: list[float] = []
    for argv in (case.ours, case.age):  # warm-up: bytecode written, files in the page cache
        before()
        _time(argv, env, case.stdin)
    for _ in range(runs):
        before()
        wall, used = _time(case.ours, env, case.stdin)
        ours.append(wall)
        cpu.append(used)
        before()
        theirs.append(_time(case.age, env, case.stdin)[0])
    return statistics.median(ours), statistics.median(theirs), statistics.median(cpu)


def _cases(gg: str, work: Path, size: int, skip_large: bool) -> list[Case]:
    key = work / "me.key"
    subprocess.run([gg, "keygen", "-o", key], check=True, capture_output=True, env=_env())
    recipient = subprocess.run(
        [gg, "keygen", "-y", key], check=True, capture_output=True, text=True
    ).stdout.strip()
    one = work / "one"
    one.write_bytes(b"x")
    one_age = work / "one.age"
    subprocess.run(["age", "-r", recipient, "-o", one_age, one], check=True)
    quote = [
        gg,
        "verify-quote",
        str(QUOTE / "quote.bin"),
        "--collateral",
        str(QUOTE / "collateral.json"),
        "--at",
        "2025-07-19T10:00:00Z",
        "--accept-tcb",
        "ConfigurationAndSWHardeningNeeded",
    ]
    cases = [
        # No target: the interpreter's own start-up in this environment (site-packages and its
        # .pth files, an editable install's finder), which every case below includes.
        Case("python -c pass", [sys.executable, "-c", "pass"], ["age", "--version"]),
        Case("--version", [gg, "--version"], ["age", "--version"], max_ms=60),
        Case("--help", [gg, "--help"], ["age", "--help"], max_ms=60),
        Case("keygen", [gg, "keygen"], ["age-keygen"], max_ms=80),
        Case(
            "seal 1 byte",
            [gg, "seal", "-r", recipient, str(one)],
            ["age", "-r", recipient, str(one)],
            max_ms=80,
        ),
        Case(
            "open 1 byte",
            [gg, "open", "-i", str(key), str(one_age)],
            ["age", "-d", "-i", str(key), str(one_age)],
            max_ms=80,
        ),
        Case("verify-quote", quote, ["age", "--version"], max_ms=150),
    ]
    if skip_large:
        return cases
    big = work / "big"
    with big.open("wb") as f:
        for _ in range(size // (64 * MIB)):
            f.write(os.urandom(64 * MIB))
        f.write(os.urandom(size % (64 * MIB)))
    big_age = work / "big.age"
    subprocess.run(["age", "-r", recipient, "-o", big_age, big], check=True)
    out = str(work / "out")
    label = f"{size / GIB:g} GiB" if size >= GIB else f"{size / MIB:g} MiB"
    cases += [
        Case(
            f"seal {label}",
            [gg, "seal", "-r", recipient, "-o", out, str(big)],
            ["age", "-r", recipient, "-o", out, str(big)],
            min_ratio=1.5,
            size=size,
        ),
        Case(
            f"open {label}",
            [gg, "open", "-i", str(key), "-o", out, str(big_age)],
            ["age", "-d", "-i", str(key), "-o", out, str(big_age)],
            min_ratio=1.5,
            size=size,
        ),
    ]
    return cases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21, help="timed runs per start-up case")
    parser.add_argument("--large-runs", type=int, default=5, help="timed runs per large case")
    parser.add_argument("--size", type=_parse_size, default=GIB, help="large file size")
    parser.add_argument("--skip-large", action="store_true", help="start-up cases only")
    args = parser.parse_args()
    gg = shutil.which("golem-graphene", path=str(Path(sys.executable).parent))
    if gg is None or shutil.which("age") is None:
        raise SystemExit("needs golem-graphene beside this Python and the age CLI (make setup)")
    tmpfs = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    env = _env()
    missed = 0
    with tempfile.TemporaryDirectory(prefix="bench-cli-", dir=tmpfs) as tmp:
        work = Path(tmp)
        out = work / "out"

        def clear() -> None:
            out.unlink(missing_ok=True)

        age_version = subprocess.run(["age", "--version"], capture_output=True, text=True)
        print(f"golem-graphene {gg}; age {age_version.stdout.strip()}; files on {tmpfs or tmp}")
        print(f"{'case':<16} {'ours':>10} {'age':>10} {'ratio':>8}  {'our cpu':>10}  target")
        for case in _cases(gg, work, args.size, args.skip_large):
            runs = args.large_runs if case.size else args.runs
            ours, theirs, cpu = _median(case, runs, env, clear)
            if case.min_ratio is not None:
                ratio = theirs / ours
                ok = ratio >= case.min_ratio
                mib = case.size / MIB
                figures = f"{mib / ours:7.0f}/s {mib / theirs:7.0f}/s {ratio:7.2f}x"
                target = f">= {case.min_ratio}x age (MiB/s) {'ok' if ok else 'MISSED'}"
            elif case.max_ms is not None:
                ok = ours * 1000 <= case.max_ms
                figures = f"{ours * 1000:7.1f} ms {theirs * 1000:7.1f} ms {ours / theirs:7.1f}x"
                target = f"<= {case.max_ms:g} ms {'ok' if ok else 'MISSED'}"
            else:
                ok = True
                figures = f"{ours * 1000:7.1f} ms {theirs * 1000:7.1f} ms {ours / theirs:7.1f}x"
                target = "(no target)"
            missed += not ok
            print(f"{case.name:<16} {figures}  {cpu * 1000:7.1f} ms  {target}", flush=True)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"(medians of {args.runs} runs, {args.large_runs} for the large cases; our cpu: user +"
        f" system time of our process; load average at the end: {load})"
    )
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
