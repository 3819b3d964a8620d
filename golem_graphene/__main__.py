"""Allow ``python -m golem_graphene``."""

from golem_graphene._cli import main

raise SystemExit(main())
