"""``python -m golem_graphene.enclave WORKLOAD_JSON IO_DIR WORKSPACE_DIR``: the entrypoint."""

import os
import sys

from golem_graphene.enclave.agent import main

code = main(sys.argv[1:])
# Everything the agent wrote is closed and its last control message flushed: skip the
# interpreter's teardown, which frees every module the agent imported and costs a large share
# of a short task's time (there are no atexit duties inside the enclave).
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
