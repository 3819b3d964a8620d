#include "workload.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"
#include "limits.h"
#include "names.h"

static bool bad(struct failure *err, const char *what)
{
    return fail(err, FAIL_WORKLOAD_FORMAT, "workload description: %s", what);
}

/* A string the workload passes to execve: no NUL inside (JSON may carry \u0000). */
static bool c_string(const struct json_value *v)
{
    return v != NULL && v->type == JSON_STRING && strlen(v->string) == v->string_len;
}

static bool string_array(const struct json_value *v, const char ***out, size_t *n,
                         struct failure *err, const char *key)
{
    if (v == NULL || v->type != JSON_ARRAY)
        return fail(err, FAIL_WORKLOAD_FORMAT, "workload description: \"%s\" must be an array",
                    key);
    *out = calloc(v->count + 1, sizeof **out);
    if (*out == NULL)
        return fail(err, FAIL_INTERNAL, "out of memory");
    for (size_t i = 0; i < v->count; i++) {
        if (!c_string(v->items[i]))
            return fail(err, FAIL_WORKLOAD_FORMAT,
                        "workload description: \"%s\" holds strings without NUL", key);
        (*out)[i] = v->items[i]->string;
    }
    *n = v->count;
    return true;
}

static bool integer(const struct json_value *v, int64_t min, int64_t *out)
{
    if (v == NULL || v->type != JSON_INT || v->integer < min)
        return false;
    *out = v->integer;
    return true;
}

static bool parse_limits(struct workload *w, const struct json_value *v, struct failure *err)
{
    static const char *const keys[] = {"wall_ms", "cpu_seconds", "memory", "output_size",
                                       "max_outputs", NULL};
    char why[128];
    if (v == NULL || v->type != JSON_OBJECT)
        return bad(err, "\"limits\" must be an object");
    if (!json_check_keys(v, keys, keys, why, sizeof why))
        return fail(err, FAIL_WORKLOAD_FORMAT, "workload description: limits: %s", why);
    if (!integer(json_get(v, "wall_ms"), 1, &w->wall_ms))
        return bad(err, "limits.wall_ms must be an integer >= 1");
    const struct json_value *cpu = json_get(v, "cpu_seconds");
    w->cpu_seconds = 0;
    if (cpu->type != JSON_NULL && !integer(cpu, 1, &w->cpu_seconds))
        return bad(err, "limits.cpu_seconds must be null or an integer >= 1");
    if (!integer(json_get(v, "memory"), 1, &w->memory))
        return bad(err, "limits.memory must be an integer >= 1");
    if (!integer(json_get(v, "output_size"), 0, &w->output_size))
        return bad(err, "limits.output_size must be an integer >= 0");
    if (!integer(json_get(v, "max_outputs"), 0, &w->max_outputs))
        return bad(err, "limits.max_outputs must be an integer >= 0");
    return true;
}

static bool parse_inputs(struct workload *w, const struct json_value *v, struct failure *err)
{
    static const char *const keys[] = {"name", "max_size", "required", NULL};
    char why[128];
    if (v == NULL || v->type != JSON_ARRAY)
        return bad(err, "\"inputs\" must be an array");
    w->inputs = calloc(v->count ? v->count : 1, sizeof *w->inputs);
    if (w->inputs == NULL)
        return fail(err, FAIL_INTERNAL, "out of memory");
    for (size_t i = 0; i < v->count; i++) {
        const struct json_value *in = v->items[i];
        if (in->type != JSON_OBJECT)
            return bad(err, "each input is an object");
        if (!json_check_keys(in, keys, keys, why, sizeof why))
            return fail(err, FAIL_WORKLOAD_FORMAT, "workload description: input %zu: %s", i,
                        why);
        const struct json_value *name = json_get(in, "name");
        if (name->type != JSON_STRING || !name_valid(name->string, name->string_len))
            return fail(err, FAIL_WORKLOAD_FORMAT,
                        "workload description: input %zu: the name breaks the file-name rule", i);
        if (workload_input(w, name->string) != NULL)
            return fail(err, FAIL_WORKLOAD_FORMAT,
                        "workload description: input \"%s\" is declared twice", name->string);
        struct input_decl *d = &w->inputs[w->ninputs];
        d->name = name->string;
        if (!integer(json_get(in, "max_size"), 0, &d->max_size))
            return fail(err, FAIL_WORKLOAD_FORMAT,
                        "workload description: input \"%s\": max_size must be an integer >= 0",
                        d->name);
        const struct json_value *req = json_get(in, "required");
        if (req->type != JSON_TRUE && req->type != JSON_FALSE)
            return fail(err, FAIL_WORKLOAD_FORMAT,
                        "workload description: input \"%s\": required must be a boolean",
                        d->name);
        d->required = req->type == JSON_TRUE;
        w->ninputs++;
    }
    return true;
}

bool workload_parse(struct workload *w, char *text, size_t len, struct failure *err)
{
    static const char *const keys[] = {"format", "argv", "args", "env", "workdir", "inputs",
                                       "outputs", "limits", NULL};
    memset(w, 0, sizeof *w);
    w->text = text;
    const struct json_value *root = json_parse_document(
        text, len, keys, keys, "the workload description", FAIL_WORKLOAD_FORMAT, &w->doc, err);
    if (root == NULL)
        return false;
    const struct json_value *format = json_get(root, "format");
    if (format->type != JSON_INT || format->integer != 1)
        return bad(err, "\"format\" must be 1");
    if (!string_array(json_get(root, "argv"), &w->argv, &w->argc, err, "argv"))
        return false;
    if (w->argc == 0 || w->argv[0][0] != '/')
        return bad(err, "\"argv\" must start with an absolute program path");
    if (!string_array(json_get(root, "args"), &w->args, &w->nargs, err, "args"))
        return false;
    const struct json_value *env = json_get(root, "env");
    if (env->type != JSON_OBJECT)
        return bad(err, "\"env\" must be an object of strings");
    w->env = calloc(env->count ? env->count : 1, sizeof *w->env);
    if (w->env == NULL)
        return fail(err, FAIL_INTERNAL, "out of memory");
    for (size_t i = 0; i < env->count; i++) {
        const struct json_member *m = &env->members[i];
        if (m->key_len == 0 || strlen(m->key) != m->key_len || strchr(m->key, '=') != NULL)
            return bad(err, "an environment name is non-empty, without '=' or NUL");
        if (!c_string(m->value))
            return bad(err, "environment values are strings without NUL");
        w->env[w->nenv++] = (struct env_entry){m->key, m->value->string};
    }
    const struct json_value *workdir = json_get(root, "workdir");
    if (workdir->type != JSON_NULL) {
        if (!c_string(workdir) || workdir->string[0] != '/')
            return bad(err, "\"workdir\" must be null or an absolute path without NUL");
        w->workdir = workdir->string;
    }
    if (!parse_inputs(w, json_get(root, "inputs"), err))
        return false;
    if (!string_array(json_get(root, "outputs"), &w->outputs, &w->noutputs, err, "outputs"))
        return false;
    for (size_t i = 0; i < w->noutputs; i++)
        if (!pattern_valid(w->outputs[i], strlen(w->outputs[i])))
            return fail(err, FAIL_WORKLOAD_FORMAT,
                        "workload description: output pattern %zu breaks the file-name rule", i);
    return parse_limits(w, json_get(root, "limits"), err);
}

bool workload_load(struct workload *w, const char *path, struct failure *err)
{
    memset(w, 0, sizeof *w);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(err, FAIL_WORKLOAD_FORMAT, "cannot open the workload description: %s",
                    strerror(errno));
    char *text = malloc(MAX_WORKLOAD_BYTES + 1);
    if (text == NULL) {
        close(fd);
        return fail(err, FAIL_INTERNAL, "out of memory");
    }
    ssize_t n = read_full(fd, text, MAX_WORKLOAD_BYTES + 1);
    int e = errno;
    close(fd);
    if (n < 0) {
        free(text);
        return fail(err, FAIL_WORKLOAD_FORMAT, "cannot read the workload description: %s",
                    strerror(e));
    }
    if (n > MAX_WORKLOAD_BYTES) {
        free(text);
        return fail(err, FAIL_WORKLOAD_FORMAT,
                    "the workload description is larger than %d bytes", MAX_WORKLOAD_BYTES);
    }
    return workload_parse(w, text, (size_t)n, err);
}

void workload_free(struct workload *w)
{
    free(w->argv);
    free(w->args);
    free(w->env);
    free(w->inputs);
    free(w->outputs);
    json_free(w->doc);
    free(w->text);
    memset(w, 0, sizeof *w);
}

const struct input_decl *workload_input(const struct workload *w, const char *name)
{
    for (size_t i = 0; i < w->ninputs; i++)
        if (strcmp(w->inputs[i].name, name) == 0)
            return &w->inputs[i];
    return NULL;
}

bool workload_declares_output(const struct workload *w, const char *name)
{
    for (size_t i = 0; i < w->noutputs; i++)
        if (pattern_match(w->outputs[i], name))
            return true;
    return false;
}
