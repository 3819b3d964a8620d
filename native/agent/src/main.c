/* golem-graphene-agent: the in-enclave agent (docs/agent-protocol.md). */
#include <string.h>

#include "agent.h"

#ifdef AGENT_TEST_BUILD
#include "testhooks.h"
#endif

int main(int argc, char **argv)
{
#ifdef AGENT_TEST_BUILD
    /* Test entry points exist only in the test build (see testhooks.h). */
    if (argc >= 2 && strncmp(argv[1], "--test-", 7) == 0)
        return testhooks_main(argc, argv);
#endif
    return agent_main(argc, argv);
}
