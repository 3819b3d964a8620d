/* The workload description (protocol section 5): what the image runs, measured with it. */
#ifndef AGENT_WORKLOAD_H
#define AGENT_WORKLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fail.h"
#include "json.h"

struct env_entry {
    const char *name;
    const char *value;
};

struct input_decl {
    const char *name;
    int64_t max_size;
    bool required;
};

struct workload {
    const char **argv; /* the program and its fixed leading arguments; argv[0] is absolute */
    size_t argc;
    const char **args; /* default arguments */
    size_t nargs;
    struct env_entry *env;
    size_t nenv;
    const char *workdir; /* where the workload starts: a folder of the root; NULL: the workspace */
    struct input_decl *inputs;
    size_t ninputs;
    const char **outputs; /* patterns */
    size_t noutputs;
    int64_t wall_ms;
    int64_t cpu_seconds; /* 0: no CPU limit */
    int64_t memory;
    int64_t output_size;
    int64_t max_outputs;
    /* Storage the pointers above point into. */
    char *text;
    struct json_doc *doc;
};

/* Load and check WORKLOAD_JSON; fails with workload_format. */
bool workload_load(struct workload *w, const char *path, struct failure *err);
/* The same from bytes: `text` (malloc'd, modified in place) is owned by w afterwards. */
bool workload_parse(struct workload *w, char *text, size_t len, struct failure *err);
void workload_free(struct workload *w);

const struct input_decl *workload_input(const struct workload *w, const char *name);
bool workload_declares_output(const struct workload *w, const char *name);

#endif
