"""``golem-graphene demo``: a local provider (sim runner) and a requestor run a real task.

It starts a provider on loopback, builds the ``csv-stats`` spec locally to know the expected
measurement, trusts the provider's simulation root by name (loudly: ``sim`` gives no SGX
protection), runs the task on the sample CSV, verifies the quote, the receipt and every output,
prints where the outputs and the receipt are, and shuts the provider down.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from golem_graphene._cli import run_interruptible
from golem_graphene.errors import UsageError
from golem_graphene.provider.config import ProviderConfig
from golem_graphene.requestor.client import Requestor, RequestorPolicy, TaskResult

DEMO_SPEC = "csv-stats"


EXAMPLE = """\
example:
  golem-graphene demo --workdir demo-out
"""


def register(sub: Any) -> None:
    """Add the ``demo`` command."""
    p = sub.add_parser(
        "demo",
        help="run a confidential task end to end on a local sim provider",
        description=__doc__,
        epilog=EXAMPLE,
    )
    p.add_argument("--spec", default=DEMO_SPEC, help=f"spec from task_specs/ (default {DEMO_SPEC})")
    p.add_argument("--specs-dir", help="folder of task specs (default: ./task_specs)")
    p.add_argument("--workdir", default="demo-out", help="demo folder, replaced on each run")
    p.set_defaults(func=run)


def _specs_dir(arg: str | None) -> Path:
    candidates = (
        [Path(arg)]
        if arg
        else [Path("task_specs"), Path(__file__).resolve().parents[2] / "task_specs"]
    )
    for path in candidates:
        if path.is_dir():
            return path.resolve()
    raise UsageError("no task_specs folder found; pass --specs-dir")


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


async def _demo(spec: Path, work: Path) -> TaskResult:
    from golem_graphene._commands._requestor_cli import Progress, load_identity
    from golem_graphene.provider.server import ProviderServer
    from golem_graphene.requestor.measure import measure_locally

    config = ProviderConfig.model_validate(
        {
            "bind": "127.0.0.1",
            "port": 0,
            "data_dir": str(work / "provider"),
            "specs_dir": str(spec.parent),
            "auth": {"open": True},
        }
    )
    _say(f"1. building the {spec.name} enclave image locally to know its expected measurement")
    mrenclave = await asyncio.to_thread(measure_locally, spec / "task.toml", "sim")
    _say(f"   expected MRENCLAVE[sim] = {mrenclave}")
    identity = load_identity(work / "requestor" / "identity.txt", create=True)
    async with ProviderServer(config) as server:
        platform = server.engine.runner.platform  # type: ignore[attr-defined]
        _say(f"2. provider listening on {server.url} (sim runner)")
        _say(
            "   WARNING: the sim runner gives NO SGX protection; the demo trusts its simulation "
            f"root by name: {platform.root_fingerprint}"
        )
        policy = RequestorPolicy(
            trusted_simulation_roots=(platform.root_fingerprint,), expected_mrenclave=(mrenclave,)
        )
        inputs = {i.name: spec / "sample" / i.name for i in _spec_inputs(spec)}
        _say(f"3. running the task on {', '.join(str(p) for p in inputs.values())}")
        async with Requestor(server.url, identity=identity, policy=policy) as requestor:
            progress = Progress(server.url)
            return await requestor.run(
                spec, inputs, work / "results", on_event=progress.event, on_progress=progress.local
            )


def _spec_inputs(spec: Path) -> list[Any]:
    from golem_graphene.protocol.spec import TaskSpec

    return list(TaskSpec.from_path(spec / "task.toml").inputs)


def run(args: argparse.Namespace) -> int:
    spec = _specs_dir(args.specs_dir) / args.spec
    if not (spec / "task.toml").is_file():
        raise UsageError(f"no task spec {args.spec!r} in {spec.parent}")
    work = Path(args.workdir).resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    # Interrupted the one way every command is (SIGINT, SIGTERM, SIGHUP cancel the main task).
    result = run_interruptible(_demo(spec, work))
    _say(
        f"4. OK: quote, report-data binding, signed receipt and every output verified "
        f"(TCB {result.verified.status.value}, SIMULATED)"
    )
    for name, path in result.outputs.items():
        _say(f"   output {name}: {path}")
    root = work / "provider" / "sim-platform" / "root.pem"
    fingerprint = result.verified.anchor_fingerprint
    _say(f"   receipt: {result.receipt_path}")
    _say(
        "   check it again offline with:\n"
        f"     golem-graphene verify-receipt {result.receipt_path}"
        f" --outputs {result.out_dir / '.sealed'}"
        f" -i {work / 'requestor' / 'identity.txt'} --root {root}"
        f" --trust-simulated-root {fingerprint}"
        f" --mrenclave {result.verified.quote.report_body.mrenclave.hex()}"
    )
    summary = result.outputs.get("summary.json")
    if summary is not None:
        _say(
            "   summary.json:\n"
            + "\n".join(
                "     " + line
                for line in json.dumps(json.loads(summary.read_text()))[:600].splitlines()
            )
        )
    _say("5. provider stopped")
    return 0 if result.exit_status == 0 else 1
