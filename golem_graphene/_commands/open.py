"""golem-graphene open: decrypt an age file with X25519 identities, as 'age -d -i' does.

Reads IN (or stdin; '-' names stdin; binary or ASCII-armored) and writes the plaintext to
-o OUT (or stdout; '-' names stdout). Identity files (-i, repeatable) use age's format: one
AGE-SECRET-KEY-1... per line, '#' comments, as 'golem-graphene keygen' and 'age-keygen' write.

-o OUT is all or nothing: the plaintext goes to a temporary file beside OUT that is renamed into
place only after the last chunk verified; on any failure (or signal) nothing appears at OUT. An
existing regular file is replaced only with --force. Standard output, character devices and
FIFOs (/dev/stdout, /dev/null) are streamed as 'age -d' does: each 64 KiB chunk is written once
it authenticates, so when a later chunk fails (exit status 1) the prefix already written must
be discarded. Silent on success unless -v; progress is drawn on a terminal.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from golem_graphene.sealing._internal.cli_support import (
    add_age_output_flags,
    human_bytes,
    identities_from_args,
    open_input,
    output_for,
    refuse_other_mode,
)

EXAMPLE = """\
example:
  golem-graphene open -i me.key -o data.csv data.csv.age
"""


def register(sub: Any) -> None:
    """Add the ``open`` command."""
    p = sub.add_parser(
        "open",
        help="decrypt an age file with X25519 identities (like age -d -i)",
        description=__doc__,
        epilog=EXAMPLE,
    )
    p.add_argument(
        "input", nargs="?", metavar="IN", help="age file to open (default or '-': stdin)"
    )
    p.add_argument("-d", "--decrypt", action="store_true", help="decrypt (as in age -d)")
    p.add_argument("-e", "--encrypt", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "-i",
        "--identity",
        action="append",
        default=[],
        metavar="FILE",
        help="an identity file (repeatable)",
    )
    add_age_output_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Open IN with the identities; returns the exit status."""
    refuse_other_mode(args.encrypt, "open decrypts; to encrypt use 'golem-graphene seal'")
    identities = identities_from_args(args.identity)
    from golem_graphene.sealing.age import decrypt_stream

    source, size = open_input(args.input)
    with source as src, output_for(args.output, args.force, binary=False) as out:
        meter = out.meter("opening", size)
        try:
            total = decrypt_stream(src, out.file, identities, progress=meter)
        finally:
            out.flush_stream()
        out.commit()
    meter.finish()
    if args.verbose:
        sys.stderr.write(f"opened {human_bytes(total)} to {out.name}\n")
    return 0
