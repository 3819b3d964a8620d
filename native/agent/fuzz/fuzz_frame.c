/* libFuzzer target: the control channel's frame parser and command checks (both commands),
 * and the workload description's parser, which shares the strict JSON reader. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "workload.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1);
    if (copy == NULL)
        abort();
    for (int cmd = CMD_ATTEST; cmd <= CMD_RUN; cmd++) {
        memcpy(copy, data, size);
        struct attest_command attest;
        struct failure err = {0};
        if (!control_parse_command(copy, size, (enum command)cmd, &attest, &err) &&
            err.code != FAIL_CONTROL_MESSAGE)
            abort();
    }
    memcpy(copy, data, size);
    struct workload w;
    struct failure err = {0};
    /* workload_parse takes the buffer over. */
    if (!workload_parse(&w, copy, size, &err) && err.code == FAIL_NONE)
        abort();
    workload_free(&w);
    return 0;
}
