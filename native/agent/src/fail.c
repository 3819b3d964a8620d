#include "fail.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void record(struct failure *err, enum fail_code code, const char *fmt, va_list ap)
{
    if (err->code != FAIL_NONE)
        return;
    err->code = code;
    int n = vsnprintf(err->message, sizeof err->message, fmt, ap);
    if (n <= 0)
        (void)snprintf(err->message, sizeof err->message, "%s", fail_code_name(code));
}

bool fail(struct failure *err, enum fail_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    record(err, code, fmt, ap);
    va_end(ap);
    return false;
}

static enum fail_code age_fail_code(enum age_class cls)
{
    switch (cls) {
    case AGE_CLASS_HMAC:
        return FAIL_AGE_HMAC;
    case AGE_CLASS_NO_MATCH:
        return FAIL_AGE_NO_MATCH;
    case AGE_CLASS_PAYLOAD:
        return FAIL_AGE_PAYLOAD;
    case AGE_CLASS_READ:
        return FAIL_INPUT_READ;
    case AGE_CLASS_WRITE:
        return FAIL_INTERNAL;
    case AGE_CLASS_HEADER:
    case AGE_CLASS_ARMOR:       /* the armor is the header's envelope */
    case AGE_CLASS_UNSUPPORTED: /* only X25519 is tried: the rest cannot open (doc section 4) */
    case AGE_CLASS_NONE:
    default:
        return FAIL_AGE_HEADER;
    }
}

bool fail_age(struct failure *err, enum age_class cls, const char *fmt, ...)
{
    if (err->code != FAIL_NONE)
        return false;
    va_list ap;
    va_start(ap, fmt);
    record(err, age_fail_code(cls), fmt, ap);
    va_end(ap);
    err->age = cls;
    return false;
}

void fail_clear(struct failure *err)
{
    err->code = FAIL_NONE;
    err->age = AGE_CLASS_NONE;
    err->message[0] = '\0';
}

const char *fail_code_name(enum fail_code code)
{
    switch (code) {
    case FAIL_NONE:
        return "none";
    case FAIL_WORKLOAD_FORMAT:
        return "workload_format";
    case FAIL_CONTROL_MESSAGE:
        return "control_message";
    case FAIL_CONTROL_CLOSED:
        return "control_closed";
    case FAIL_ATTESTATION:
        return "attestation";
    case FAIL_INPUT_MANIFEST_FORMAT:
        return "input_manifest_format";
    case FAIL_INPUT_MANIFEST_AUTH:
        return "input_manifest_auth";
    case FAIL_INPUT_UNDECLARED:
        return "input_undeclared";
    case FAIL_INPUT_TOO_LARGE:
        return "input_too_large";
    case FAIL_INPUT_REQUIRED:
        return "input_required";
    case FAIL_INPUT_MISSING:
        return "input_missing";
    case FAIL_INPUT_EXTRA:
        return "input_extra";
    case FAIL_INPUT_NOT_REGULAR:
        return "input_not_regular";
    case FAIL_INPUT_READ:
        return "input_read";
    case FAIL_INPUT_SIZE:
        return "input_size";
    case FAIL_INPUT_SHA256:
        return "input_sha256";
    case FAIL_AGE_HEADER:
        return "age_header";
    case FAIL_AGE_HMAC:
        return "age_hmac";
    case FAIL_AGE_NO_MATCH:
        return "age_no_match";
    case FAIL_AGE_PAYLOAD:
        return "age_payload";
    case FAIL_WORKLOAD_START:
        return "workload_start";
    case FAIL_OUTPUT_SYMLINK:
        return "output_symlink";
    case FAIL_OUTPUT_NOT_REGULAR:
        return "output_not_regular";
    case FAIL_OUTPUT_HARD_LINK:
        return "output_hard_link";
    case FAIL_OUTPUT_RESERVED:
        return "output_reserved";
    case FAIL_OUTPUT_TOO_LARGE:
        return "output_too_large";
    case FAIL_TOO_MANY_OUTPUTS:
        return "too_many_outputs";
    case FAIL_OUTPUT_READ:
        return "output_read";
    case FAIL_SEALING:
        return "sealing";
    case FAIL_INTERNAL:
    default:
        return "internal";
    }
}

const char *age_class_name(enum age_class cls)
{
    switch (cls) {
    case AGE_CLASS_NONE:
        return "ok";
    case AGE_CLASS_HEADER:
        return "header";
    case AGE_CLASS_ARMOR:
        return "armor";
    case AGE_CLASS_UNSUPPORTED:
        return "unsupported";
    case AGE_CLASS_HMAC:
        return "hmac";
    case AGE_CLASS_NO_MATCH:
        return "no_match";
    case AGE_CLASS_PAYLOAD:
        return "payload";
    case AGE_CLASS_READ:
        return "read";
    case AGE_CLASS_WRITE:
    default:
        return "write";
    }
}
