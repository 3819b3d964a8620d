"""golem-graphene measure: a container image's expected MRENCLAVE per runner, without running it.

IMAGE is an image reference as skopeo names it: oci:DIR[:TAG], oci-archive:FILE[:TAG] or
docker-archive:FILE[:NAME:TAG], optionally pinned with @sha256:DIGEST. The measurement is what
every provider's `golem-graphene build` of the same image and spec gives, on any machine: it
depends on the image's files and its config's command and environment, and on the spec, not
on how the image was packed. With --spec, the image runs under that spec (IMAGE may be left
out: the spec names its image); without, under the default spec (the image's own command, no
declared inputs, every output).

The gramine-sgx MRENCLAVE also measures Gramine's own binaries: it is computed only where
gramine-sgx-sign is installed, else it is null with the reason.

Exit 0 with the measurements, 1 when the image is bad (FAIL: <check>: ...), 2 on usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

EXAMPLE = """\
example:
  golem-graphene measure oci-archive:task_specs/gzip-compress/image.tar
  golem-graphene measure --spec task_specs/csv-stats --json
"""


def register(sub: Any) -> None:
    """Add the ``measure`` command."""
    p = sub.add_parser(
        "measure",
        help="print a container image's expected MRENCLAVE per runner, offline",
        description=__doc__,
        epilog=EXAMPLE,
    )
    p.add_argument("image", metavar="IMAGE", nargs="?", help="image reference (see above)")
    p.add_argument("--spec", metavar="SPEC", help="task spec folder or task.toml")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Measure; returns the exit status."""
    from golem_graphene.errors import UsageError
    from golem_graphene.host.measure import measure

    if args.image is None and args.spec is None:
        raise UsageError("name an IMAGE, or a --spec whose image to measure")
    spec = Path(args.spec) if args.spec else None
    if spec is not None and not spec.exists():
        raise UsageError(f"--spec {str(spec)!r} does not exist")
    result = measure(args.image, spec=spec)
    if args.json:
        sys.stdout.write(json.dumps(result.to_json()) + "\n")
        return 0
    sys.stdout.write(f"image_digest: {result.image_digest}\n")
    sys.stdout.write(f"mrenclave[sim]: {result.sim}\n")
    if result.gramine_sgx is not None:
        sys.stdout.write(f"mrenclave[gramine-sgx]: {result.gramine_sgx}\n")
    else:
        sys.stdout.write(f"mrenclave[gramine-sgx]: unknown here ({result.reason})\n")
    return 0
