"""``python -m golem_graphene.enclave IO_DIR``: the enclave's entrypoint."""

import sys

from golem_graphene.enclave.agent import main

sys.exit(main(sys.argv[1:]))
