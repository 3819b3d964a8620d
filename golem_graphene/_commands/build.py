"""``golem-graphene build SPEC``: build a task spec's enclave image and print its measurements."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from golem_graphene.host.image import build_image


def register(sub: Any) -> None:
    """Add the ``build`` command."""
    p = sub.add_parser("build", help="build the enclave image of a task spec", description=__doc__)
    p.add_argument("spec", metavar="SPEC", help="task spec folder or task.toml")
    p.add_argument(
        "-o", "--output", metavar="DIR", help="image folder (default: build/<spec name>)"
    )
    p.add_argument(
        "--key",
        metavar="KEY",
        help="enclave signing key, RSA-3072 e=3 PEM (created if absent; default "
        "~/.config/golem-graphene/enclave-key.pem)",
    )
    p.add_argument(
        "--log-level-enclave",
        default="error",
        dest="enclave_log_level",
        help="loader.log_level of the manifest (default: error)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing image folder")
    p.add_argument("--json", action="store_true", help="print the image summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    spec = Path(args.spec)
    from golem_graphene.protocol.spec import TaskSpec

    name = TaskSpec.from_path(spec).name
    out = Path(args.output) if args.output else Path("build") / name
    image = build_image(
        spec,
        out,
        key_path=Path(args.key) if args.key else None,
        log_level=args.enclave_log_level,
        force=args.force,
    )
    info = dict(image.info)
    info["directory"] = str(image.directory)
    if args.json:
        sys.stdout.write(json.dumps(info, indent=2) + "\n")
    sys.stderr.write(f"OK: built {image.directory}\n")
    for runner, value in info["mrenclave"].items():
        shown = value or "(not built here: needs gramine-sgx-sign on a Gramine host)"
        sys.stderr.write(f"  mrenclave[{runner}]: {shown}\n")
    sys.stderr.write(f"  mrsigner: {info['mrsigner']}\n  trusted files: {info['trusted_files']}\n")
    return 0
