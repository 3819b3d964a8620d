"""``golem-graphene open``: decrypt an age file with X25519 identities (like ``age -d -i``).

Reads IN (or stdin; binary or ASCII-armored) and writes the plaintext to ``-o OUT`` or stdout.

* ``-o OUT`` is all or nothing: plaintext goes to a temporary file that is moved to OUT only
  after the last chunk verified at end of input; on any failure nothing appears at OUT.
* stdout is streamed: each 64 KiB chunk is written once it authenticates, as ``age -d`` does. If
  the file turns out truncated or tampered later, a verified prefix has already been written;
  the command then fails with exit status 1 and that output must be discarded.

Identity files (``-i``, repeatable) use age's format: one ``AGE-SECRET-KEY-1...`` per line,
``#`` comments. Progress (bytes, rate) is shown on stderr when it is a terminal.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from golem_graphene.errors import UsageError
from golem_graphene.sealing._internal.atomic import AtomicOutput
from golem_graphene.sealing._internal.cli_support import ProgressMeter, human_bytes, open_input
from golem_graphene.sealing.age import decrypt_stream
from golem_graphene.sealing.keys import X25519Identity, load_identities


def register(sub: Any) -> None:
    """Add the ``open`` command."""
    p = sub.add_parser(
        "open",
        help="decrypt an age file with X25519 identities (like age -d -i)",
        description=__doc__,
    )
    p.add_argument("input", nargs="?", metavar="IN", help="age file to open (default: stdin)")
    p.add_argument(
        "-i",
        "--identity",
        action="append",
        default=[],
        metavar="IDENTITY",
        help="an identity file (repeatable)",
    )
    p.add_argument("-o", "--output", metavar="OUT", help="output file (default: stdout)")
    p.add_argument("--force", action="store_true", help="overwrite an existing OUT")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Open IN with the identities; returns the exit status."""
    identities: list[X25519Identity] = []
    for path in args.identity:
        identities.extend(load_identities(path))
    if not identities:
        raise UsageError("no identities: give -i IDENTITY_FILE")
    to_stdout = not args.output or args.output == "-"
    source, size = open_input(args.input)
    meter = ProgressMeter(sys.stderr, "opening", size)
    with source as src:
        if to_stdout:
            try:
                total = decrypt_stream(src, sys.stdout.buffer, identities, progress=meter)
            finally:
                sys.stdout.buffer.flush()
            where = "stdout"
        else:
            with AtomicOutput(args.output, overwrite=args.force) as out:
                total = decrypt_stream(src, out.file, identities, progress=meter)
                out.commit()
            where = args.output
    meter.finish()
    sys.stderr.write(f"OK: opened {human_bytes(total)} to {where}\n")
    return 0
