/* The workload's outputs (protocol section 6, steps 6-7): collected from WORKSPACE_DIR/outputs
 * without following anything the workload left there, and sealed to R one by one. */
#ifndef AGENT_OUTPUTS_H
#define AGENT_OUTPUTS_H

#include <stdbool.h>
#include <stdint.h>

#include "age_seal.h"
#include "control.h"
#include "fail.h"
#include "limits.h"
#include "workload.h"

struct output {
    char name[MAX_NAME_LEN + 1];
    struct seal_result sealed;
};

struct output_list {
    struct output *items;
    size_t count;
};

/* Step 6: the declared outputs in byte order of their names, checked (output_* codes and
 * too_many_outputs). */
bool outputs_collect(const struct workload *w, int workspace_fd, struct output_list *out,
                     struct failure *err);

/* Seal one open file as IO_DIR/outputs/<name>.age (through a temporary name, renamed when
 * complete), reporting progress; fills o->sealed. */
bool output_seal_fd(int outputs_dir, int fd, uint64_t size, const char *name,
                    const uint8_t recipient[32], struct control *c, struct output *o,
                    struct failure *err);

/* Seal every collected output (opened without following links or blocking). */
bool outputs_seal(int workspace_fd, int outputs_dir, struct output_list *list,
                  const uint8_t recipient[32], struct control *c, struct failure *err);

/* IO_DIR/outputs, created if missing; a link or non-folder there is refused (sealing). */
int outputs_dir_open(int io_fd, struct failure *err);

void output_list_free(struct output_list *list);

#endif
