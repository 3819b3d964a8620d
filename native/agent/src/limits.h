/* Every size and count bound of the agent in one place, so a reviewer can audit them together.
 * The values are the protocol's (docs/agent-protocol.md) and golem_graphene/limits.py's. */
#ifndef AGENT_LIMITS_H
#define AGENT_LIMITS_H

/* Control channel: one frame, line feed included (protocol section 2). */
#define MAX_FRAME_BYTES (256 * 1024)
/* Values in one frame: the largest message has six keys; anything near this is hostile. */
#define MAX_FRAME_VALUES 64
/* A failed event's message, in characters. */
#define MAX_EVENT_MESSAGE 1024

/* The workload description (protocol section 5). */
#define MAX_WORKLOAD_BYTES (1024 * 1024)

/* The sealed input manifest and its plaintext (limits.py MAX_INPUT_MANIFEST_BYTES). */
#define MAX_SEALED_MANIFEST_BYTES (4 * 1024 * 1024)
#define MAX_TASK_FILES 4096          /* inputs per manifest, declared outputs per receipt */
#define MAX_TASK_ARGS 4096           /* manifest args */
#define MAX_TASK_ENV 1024            /* manifest env entries */
#define MAX_TASK_ARGV_ENV_BYTES (1024 * 1024)

/* Strict JSON documents: nesting and the number of values a parse may create (each value is a
 * node of a few dozen bytes, so this bounds the parser's memory whatever the input). */
#define MAX_JSON_DEPTH 64
#define MAX_JSON_VALUES (64 * 1024)

/* Names of inputs and outputs (protocol section 2, the one file-name rule). */
#define MAX_NAME_LEN 128

/* age (limits.py): header bytes, one header line, stanzas, scrypt work factor, armor spaces. */
#define MAX_AGE_HEADER_BYTES (1024 * 1024)
#define MAX_AGE_HEADER_LINE 4096
#define MAX_AGE_STANZAS 4096
#define MAX_AGE_SCRYPT_WORK_FACTOR 22
#define MAX_AGE_ARMOR_WHITESPACE 1024

/* Attestation: a quote (protocol section 4, evidence); the header and report body it must
 * at least have (48 + 384 bytes) for the fields the agent reads. */
#define MAX_QUOTE_BYTES (64 * 1024)
#define MIN_QUOTE_BYTES 432

/* Progress: one event per this many bytes of an input or output (and one at its end). */
#define PROGRESS_STEP_BYTES (64ULL * 1024 * 1024)

/* The largest integer every JSON peer reads exactly (I-JSON, RFC 7493). */
#define MAX_SAFE_INTEGER 9007199254740991LL

#endif
