"""``golem-graphene keygen``: make an age X25519 identity, as ``age-keygen`` does.

Without ``-o`` the identity goes to stdout; with ``-o FILE`` it is written with mode 0600 and an
existing file is kept unless ``--force``. Either way the public key (recipient) is printed on
stderr as ``Public key: age1...``. The file format is age's, so ``age -d -i FILE`` uses it.
``-y FILE`` prints the recipients of an existing identity file instead (``age-keygen -y``).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Any

from golem_graphene.sealing._internal.atomic import AtomicOutput
from golem_graphene.sealing.keys import X25519Identity, load_identities


def register(sub: Any) -> None:
    """Add the ``keygen`` command."""
    p = sub.add_parser(
        "keygen",
        help="generate an age X25519 identity (like age-keygen)",
        description=__doc__,
    )
    p.add_argument("-o", "--output", metavar="FILE", help="write the identity to FILE (mode 0600)")
    p.add_argument("--force", action="store_true", help="overwrite an existing FILE")
    p.add_argument(
        "-y",
        dest="convert",
        metavar="IDENTITY_FILE",
        help="print the recipient of each identity in IDENTITY_FILE and exit",
    )
    p.set_defaults(func=run)


def identity_file_text(identity: X25519Identity, created: datetime | None = None) -> str:
    """The identity in age-keygen's file layout: two comment lines, then the key."""
    when = (created or datetime.now().astimezone()).isoformat(timespec="seconds")
    return (
        f"# created: {when}\n"
        f"# public key: {identity.recipient().to_string()}\n"
        f"{identity.to_string()}\n"
    )


def run(args: argparse.Namespace) -> int:
    """Generate (or convert) and write the identity; returns the exit status."""
    if args.convert:
        for identity in load_identities(args.convert):
            sys.stdout.write(identity.recipient().to_string() + "\n")
        return 0
    identity = X25519Identity.generate()
    text = identity_file_text(identity)
    if args.output and args.output != "-":
        with AtomicOutput(args.output, overwrite=args.force) as out:
            out.file.write(text.encode("ascii"))
            out.commit()
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    sys.stderr.write(f"Public key: {identity.recipient().to_string()}\n")
    return 0
