"""The native in-enclave agent against its targets (issue 12), side by side with ``age``.

    .venv/bin/python bench/agent.py [--size 1G] [--rounds 3] [--workdir /dev/shm]

- the agent's size: the static executable every image carries (target <= 2 MiB);
- its peak RSS through a whole task that seals ``--size`` bytes of output (target <= 8 MiB);
  measured as the ``ru_maxrss`` of the agent's process tree when it is reaped (the workload,
  ``head -c``, is a few hundred KiB: the figure is the agent's);
- sealing that output inside the task (from the agent's ``sealing`` event to ``outputs_sealed``:
  one read of the plaintext, encryption, both SHA-256 digests and the write) beside the ``age``
  CLI sealing the same bytes to the same recipient, whole process, in the same run (target: at
  least as fast).

The agent runs outside any sandbox here (no ``/dev/attestation``: it reports the unattested
``gramine-direct`` runner), so the figures are the agent's own, not the sandbox's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from golem_graphene.host.image import shipped_agent
from golem_graphene.protocol.binding import Transcript, new_nonce, new_task_id
from golem_graphene.protocol.spec import parse_size
from golem_graphene.sealing.input_manifest import InputManifest, seal_manifest
from golem_graphene.sealing.keys import X25519Identity

MIB = 1 << 20
TIME = "/usr/bin/time"  # GNU time (Debian package time): the agent's own peak RSS

SIZE_TARGET = 2 * MIB
RSS_TARGET = 8 * MIB


def frame(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def one_task(agent: Path, work: Path, size: int) -> dict[str, float]:
    """Run the agent through a task whose workload writes ``size`` bytes; returns timings and
    the peak RSS of its process tree."""
    shutil.rmtree(work, ignore_errors=True)
    io, workspace = work / "io", work / "workspace"
    (io / "inputs").mkdir(parents=True)
    workspace.mkdir()
    workload = {
        "format": 1,
        "argv": ["/bin/sh", "-c", f"head -c {size} /dev/zero > outputs/out"],
        "args": [],
        "env": {},
        "workdir": None,
        "inputs": [],
        "outputs": ["out"],
        "limits": {
            "wall_ms": 600_000,
            "cpu_seconds": None,
            "memory": 1 << 30,
            "output_size": size + 1,
            "max_outputs": 4,
        },
    }
    (work / "workload.json").write_text(json.dumps(workload))
    requestor = X25519Identity.generate()
    task_id, nonce = new_task_id(), new_nonce()
    # Started by GNU time, a small process: a child forked straight from this interpreter would
    # count the interpreter's pages (before its exec) in its own peak RSS.
    rss_file = work / "maxrss-kib"
    command = [str(agent), str(work / "workload.json"), str(io), str(workspace)]
    proc = subprocess.Popen(
        [TIME, "-f", "%M", "-o", str(rss_file), *command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None

    def event() -> dict[str, Any]:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise SystemExit("the agent ended early")
        got: dict[str, Any] = json.loads(line)
        if got["event"] == "failed":
            raise SystemExit(f"the agent failed: {got}")
        return got

    event()  # ready
    proc.stdin.write(
        frame(
            {
                "cmd": "attest",
                "task_id": task_id.hex(),
                "nonce": nonce.hex(),
                "requestor_key": requestor.recipient().to_string(),
            }
        )
    )
    proc.stdin.flush()
    evidence = event()
    transcript = Transcript(
        task_id=task_id,
        nonce=nonce,
        enclave_key=bytes.fromhex(evidence["enclave_key"]),
        signing_key=bytes.fromhex(evidence["signing_key"]),
        requestor_key=requestor.recipient().public_bytes(),
    )
    manifest = InputManifest(task_id=task_id)
    (io / "manifest.sealed").write_bytes(
        seal_manifest(manifest, requestor, transcript.enclave_key, transcript)
    )
    proc.stdin.write(frame({"cmd": "run"}))
    proc.stdin.flush()
    while event()["event"] != "sealing":
        pass
    sealing_started = time.perf_counter()
    while event()["event"] != "outputs_sealed":
        pass
    sealed = time.perf_counter() - sealing_started
    if proc.wait() != 0:
        raise SystemExit(f"the agent exited with status {proc.returncode}")
    return {
        "seal_s": sealed,
        "peak_rss_bytes": int(rss_file.read_text().split()[-1]) * 1024,
        "recipient": requestor.recipient().to_string(),  # type: ignore[dict-item]
    }


def age_seal(plain: Path, recipient: str, out: Path) -> float:
    start = time.perf_counter()
    subprocess.run(["age", "-r", recipient, "-o", str(out), str(plain)], check=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1G", help="bytes of output sealed (default 1G)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per side")
    parser.add_argument("--workdir", default="/dev/shm", help="a tmpfs (default /dev/shm)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    size = parse_size(args.size)
    if shutil.which("age") is None or not Path(TIME).exists():
        parser.error("the age CLI and GNU time are needed (make setup installs age and time)")

    root = Path(tempfile.mkdtemp(prefix="gg-bench-agent-", dir=args.workdir))
    try:
        agent = root / "golem-graphene-agent"
        agent.write_bytes(shipped_agent())
        agent.chmod(0o755)
        plain = root / "plain"
        subprocess.run(["head", "-c", str(size), "/dev/zero"], stdout=plain.open("wb"), check=True)
        agent_s, age_s, rss = [], [], []
        for _ in range(args.rounds):  # interleaved, so both sides share the machine's state
            run = one_task(agent, root / "task", size)
            agent_s.append(run["seal_s"])
            rss.append(run["peak_rss_bytes"])
            age_s.append(age_seal(plain, str(run["recipient"]), root / "age-out"))
            (root / "age-out").unlink()
        shutil.rmtree(root / "task", ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    agent_rate = size / statistics.median(agent_s) / MIB
    age_rate = size / statistics.median(age_s) / MIB
    result = {
        "agent_bytes": len(shipped_agent()),
        "agent_bytes_target": SIZE_TARGET,
        "peak_rss_bytes": max(rss),
        "peak_rss_target": RSS_TARGET,
        "size": size,
        "agent_seal_mib_s": agent_rate,
        "age_seal_mib_s": age_rate,
        "ratio": agent_rate / age_rate,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    print(
        f"agent executable: {result['agent_bytes'] / MIB:.2f} MiB "
        f"(target <= 2 MiB: {verdict(result['agent_bytes'] <= SIZE_TARGET)})"
    )
    print(
        f"agent peak RSS sealing {size / MIB:.0f} MiB: {max(rss) / MIB:.1f} MiB "
        f"(target <= 8 MiB: {verdict(max(rss) <= RSS_TARGET)})"
    )
    print(
        f"sealing {size / MIB:.0f} MiB (medians of {args.rounds}): agent {agent_rate:.0f} MiB/s "
        f"(plaintext read, encrypted, both SHA-256, written), age CLI {age_rate:.0f} MiB/s "
        f"(whole process): {agent_rate / age_rate:.2f}x "
        f"(target >= 1x: {verdict(agent_rate >= age_rate)})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
