"""``golem-graphene seal``: encrypt to age X25519 recipients (like ``age -r``).

Reads IN (or stdin) and writes an age file to ``-o OUT`` (or stdout). Output files are written
to a temporary file and renamed into place when complete; an existing OUT is kept unless
``--force``. ``--armor`` produces ASCII armor; binary output is not written to a terminal.
Recipients come from ``-r age1...`` and from ``-R FILE`` (one per line, ``#`` comments).
Progress (bytes, rate) is shown on stderr when it is a terminal.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from golem_graphene.errors import UsageError
from golem_graphene.sealing._internal.atomic import AtomicOutput
from golem_graphene.sealing._internal.cli_support import ProgressMeter, human_bytes, open_input
from golem_graphene.sealing.age import encrypt_stream
from golem_graphene.sealing.keys import X25519Recipient, load_recipients


def register(sub: Any) -> None:
    """Add the ``seal`` command."""
    p = sub.add_parser(
        "seal",
        help="encrypt a file to age X25519 recipients (like age -r)",
        description=__doc__,
    )
    p.add_argument("input", nargs="?", metavar="IN", help="file to seal (default: stdin)")
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
    p.add_argument("-a", "--armor", action="store_true", help="write ASCII-armored output")
    p.add_argument("-o", "--output", metavar="OUT", help="output file (default: stdout)")
    p.add_argument("--force", action="store_true", help="overwrite an existing OUT")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Seal IN to the recipients; returns the exit status."""
    recipients = [X25519Recipient.from_string(r) for r in args.recipient]
    for path in args.recipients_file:
        recipients.extend(load_recipients(path))
    if not recipients:
        raise UsageError("no recipients: give -r age1... or -R FILE")
    to_stdout = not args.output or args.output == "-"
    if to_stdout and not args.armor and sys.stdout.isatty():
        raise UsageError("refusing to write binary age output to a terminal; use -o or --armor")
    source, size = open_input(args.input)
    meter = ProgressMeter(sys.stderr, "sealing", size)
    with source as src:
        if to_stdout:
            total = encrypt_stream(
                src, sys.stdout.buffer, recipients, armor=args.armor, progress=meter
            )
            sys.stdout.buffer.flush()
            where = "stdout"
        else:
            with AtomicOutput(args.output, overwrite=args.force) as out:
                total = encrypt_stream(src, out.file, recipients, armor=args.armor, progress=meter)
                out.commit()
            where = args.output
    meter.finish()
    n = len(recipients)
    sys.stderr.write(
        f"OK: sealed {human_bytes(total)} to {where} for {n} recipient{'s' * (n != 1)}\n"
    )
    return 0
