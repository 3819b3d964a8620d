"""golem-graphene seal: encrypt to age X25519 recipients, as 'age -e -r' does.

Reads IN (or stdin; '-' names stdin) and writes an age file to -o OUT (or stdout; '-' names
stdout). Recipients come from -r age1..., from -R FILE (one per line, '#' comments) and from
-i IDENTITY_FILE (its public keys), each repeatable. The file opens with 'age -d' and with
'golem-graphene open'.

A new OUT appears only when complete (a temporary file beside it is renamed into place); an
existing regular file is replaced only with --force. Character devices and FIFOs, or links to
them (/dev/null, /dev/stdout), are written in place. Binary output is not written to a
terminal: use -o or -a. Silent on success unless -v; progress is drawn on a terminal.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from golem_graphene.sealing._internal.cli_support import (
    add_age_output_flags,
    human_bytes,
    open_input,
    output_for,
    recipients_from_args,
    refuse_other_mode,
)

EXAMPLE = """\
example:
  golem-graphene keygen -o me.key
  golem-graphene seal -R <(golem-graphene keygen -y me.key) -o data.csv.age data.csv
"""


def register(sub: Any) -> None:
    """Add the ``seal`` command."""
    p = sub.add_parser(
        "seal",
        help="encrypt a file to age X25519 recipients (like age -e -r)",
        description=__doc__,
        epilog=EXAMPLE,
    )
    p.add_argument("input", nargs="?", metavar="IN", help="file to seal (default or '-': stdin)")
    p.add_argument("-e", "--encrypt", action="store_true", help="encrypt (the default, as in age)")
    p.add_argument("-d", "--decrypt", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "-r",
        "--recipient",
        action="append",
        default=[],
        metavar="RECIPIENT",
        help="an age1... recipient (repeatable)",
    )
    p.add_argument(
        "-R",
        "--recipients-file",
        action="append",
        default=[],
        metavar="FILE",
        help="a file of recipients, one per line (repeatable)",
    )
    p.add_argument(
        "-i",
        "--identity",
        action="append",
        default=[],
        metavar="FILE",
        help="an identity file: seal to its public keys (repeatable)",
    )
    p.add_argument("-a", "--armor", action="store_true", help="write ASCII-armored (PEM) output")
    add_age_output_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Seal IN to the recipients; returns the exit status."""
    refuse_other_mode(args.decrypt, "seal encrypts; to decrypt use 'golem-graphene open'")
    recipients = recipients_from_args(args.recipient, args.recipients_file, args.identity)
    from golem_graphene.sealing.age import encrypt_stream

    source, size = open_input(args.input)
    with source as src, output_for(args.output, args.force, binary=not args.armor) as out:
        meter = out.meter("sealing", size)
        total = encrypt_stream(src, out.file, recipients, armor=args.armor, progress=meter)
        out.commit()
    meter.finish()
    if args.verbose:
        n = len(recipients)
        sys.stderr.write(
            f"sealed {human_bytes(total)} to {out.name} for {n} recipient{'s' * (n != 1)}\n"
        )
    return 0
