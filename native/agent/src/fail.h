/* Typed failures: every refusal the agent can report, with the stable codes of
 * docs/agent-protocol.md (section 4, "failed"). Functions that can fail return false and fill a
 * struct failure; the main flow turns the first one into the terminal `failed` event. */
#ifndef AGENT_FAIL_H
#define AGENT_FAIL_H

#include <stdbool.h>
#include <stddef.h>

enum fail_code {
    FAIL_NONE = 0,
    FAIL_WORKLOAD_FORMAT,
    FAIL_CONTROL_MESSAGE,
    FAIL_CONTROL_CLOSED,
    FAIL_ATTESTATION,
    FAIL_INPUT_MANIFEST_FORMAT,
    FAIL_INPUT_MANIFEST_AUTH,
    FAIL_INPUT_UNDECLARED,
    FAIL_INPUT_TOO_LARGE,
    FAIL_INPUT_REQUIRED,
    FAIL_INPUT_MISSING,
    FAIL_INPUT_EXTRA,
    FAIL_INPUT_NOT_REGULAR,
    FAIL_INPUT_READ,
    FAIL_INPUT_SIZE,
    FAIL_INPUT_SHA256,
    FAIL_AGE_HEADER,
    FAIL_AGE_HMAC,
    FAIL_AGE_NO_MATCH,
    FAIL_AGE_PAYLOAD,
    FAIL_WORKLOAD_START,
    FAIL_OUTPUT_SYMLINK,
    FAIL_OUTPUT_NOT_REGULAR,
    FAIL_OUTPUT_HARD_LINK,
    FAIL_OUTPUT_RESERVED,
    FAIL_OUTPUT_TOO_LARGE,
    FAIL_TOO_MANY_OUTPUTS,
    FAIL_OUTPUT_READ,
    FAIL_SEALING,
    FAIL_INTERNAL,
};

/* The age decryptor's own classes, finer than the protocol's codes: they are the Python
 * requestor's error classes (AgeHeaderError, AgeArmorError, ...), so the conformance tests can
 * compare outcomes one to one. The agent folds them into the age_* codes (age_fail_code). */
enum age_class {
    AGE_CLASS_NONE = 0,
    AGE_CLASS_HEADER,
    AGE_CLASS_ARMOR,
    AGE_CLASS_UNSUPPORTED,
    AGE_CLASS_HMAC,
    AGE_CLASS_NO_MATCH,
    AGE_CLASS_PAYLOAD,
    AGE_CLASS_READ,  /* the ciphertext could not be read */
    AGE_CLASS_WRITE, /* the plaintext could not be written */
};

/* A message is at most 1024 characters on the wire; ours are ASCII, so 1024 bytes. */
#define FAIL_MESSAGE_MAX 1024

struct failure {
    enum fail_code code;
    enum age_class age;
    char message[FAIL_MESSAGE_MAX + 1];
};

/* Record a failure (the first one wins: later calls while unwinding do not overwrite it) and
 * return false, so callers can write `return fail(err, CODE, "...")`. */
bool fail(struct failure *err, enum fail_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The same for the age decryptor: the class and the protocol code it maps to. */
bool fail_age(struct failure *err, enum age_class cls, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Drop a recorded failure (a caller that recovers, e.g. a probe). */
void fail_clear(struct failure *err);

const char *fail_code_name(enum fail_code code);
const char *age_class_name(enum age_class cls);

#endif
