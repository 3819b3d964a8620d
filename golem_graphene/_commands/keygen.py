"""golem-graphene keygen: make an age X25519 identity, as 'age-keygen' does.

Without -o the identity goes to stdout; with -o FILE it is written with mode 0600, and an
existing file is kept unless --force. When the identity does not go to a terminal its public
key (recipient) is printed on stderr as 'Public key: age1...'. The file format is age's, so
'age -d -i FILE' uses it.

-y prints the recipient of each identity in IN (a file, or stdin when IN is omitted or '-')
instead, one per line, to stdout or -o OUT (as 'age-keygen -y').
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

from golem_graphene.sealing._internal.cli_support import add_age_output_flags, output_for

if TYPE_CHECKING:
    from golem_graphene.sealing.keys import X25519Identity

EXAMPLE = """\
example:
  golem-graphene keygen -o me.key
  golem-graphene keygen -y me.key        # prints the public key age1...
"""


def register(sub: Any) -> None:
    """Add the ``keygen`` command."""
    p = sub.add_parser(
        "keygen",
        help="generate an age X25519 identity (like age-keygen)",
        description=__doc__,
        epilog=EXAMPLE,
    )
    add_age_output_flags(p)
    p.add_argument(
        "-y",
        dest="convert",
        action="store_true",
        help="print the recipient of each identity in IN instead of making one",
    )
    p.add_argument(
        "input",
        nargs="?",
        metavar="IN",
        help="with -y: the identity file (default or '-': stdin)",
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
    from golem_graphene.errors import UsageError

    if args.convert:
        return _convert(args)
    if args.input is not None:
        raise UsageError(f"IN ({args.input!r}) goes with -y; keygen makes a new identity")
    from golem_graphene.sealing.keys import X25519Identity

    identity = X25519Identity.generate()
    with output_for(args.output, args.force, binary=False) as out:
        out.file.write(identity_file_text(identity).encode("ascii"))
        out.commit()
        to_terminal = out.to_terminal
    if not to_terminal:
        sys.stderr.write(f"Public key: {identity.recipient().to_string()}\n")
    if args.verbose and out.name != "stdout":
        sys.stderr.write(f"wrote the identity to {out.name}\n")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from golem_graphene.errors import Error, UsageError
    from golem_graphene.limits import MAX_AGE_KEY_FILE_BYTES
    from golem_graphene.sealing.keys import load_identities, parse_identities

    source = args.input or "-"
    try:
        if source == "-":
            text = sys.stdin.buffer.read(MAX_AGE_KEY_FILE_BYTES + 1).decode("utf-8", "replace")
            identities = parse_identities(text, source="stdin")
        else:
            identities = load_identities(source)
    except UsageError:
        raise
    except Error as exc:
        raise UsageError(f"keygen -y {source!r}: {exc.describe()}") from None
    text = "".join(identity.recipient().to_string() + "\n" for identity in identities)
    with output_for(args.output, args.force, binary=False) as out:
        out.file.write(text.encode("ascii"))
        out.commit()
    return 0
