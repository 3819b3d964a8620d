"""``golem-graphene runtime ...``: the Golem ExeUnit runtime ``gramine-sgx`` (for ya-provider).

The same command line as ``python -m golem_graphene.runtime``; see
:mod:`golem_graphene.runtime.cli` and ``docs/golem.md``.
"""

from __future__ import annotations

from typing import Any

from golem_graphene.runtime.cli import add_arguments, dispatch

EXAMPLE = """\
example:
  golem-graphene runtime test --runner sim
"""


def register(sub: Any) -> None:
    """Add the ``runtime`` command."""
    p = sub.add_parser(
        "runtime",
        help="the Golem ExeUnit runtime gramine-sgx (test, offer-template, deploy, start, run)",
        description=__doc__,
        epilog=EXAMPLE,
    )
    add_arguments(p)
    p.set_defaults(func=dispatch)
