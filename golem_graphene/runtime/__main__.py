"""``python -m golem_graphene.runtime``: the ``gramine-sgx`` ExeUnit runtime (see ``cli``)."""

from golem_graphene.runtime.cli import main

raise SystemExit(main())
