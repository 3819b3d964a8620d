/* The agent's conversation (protocol section 3), from `ready` to `outputs_sealed` or `failed`. */
#ifndef AGENT_AGENT_H
#define AGENT_AGENT_H

#define AGENT_NAME "golem-graphene-agent/0.1.0"

/* Run the whole conversation on standard input and output; returns the exit status (0 after
 * outputs_sealed, 1 after failed). */
int agent_main(int argc, char **argv);

#endif
