/* Running the workload (protocol section 6, steps 4-5): argv, environment, limits, a new
 * session, the wall clock, and the whole process group killed at the end. */
#ifndef AGENT_RUNNER_H
#define AGENT_RUNNER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "fail.h"
#include "manifest.h"
#include "workload.h"

struct run {
    pid_t pid;
    int stdout_fd, stderr_fd; /* the agent's own descriptors of .stdout and .stderr */
    int64_t started_us;       /* wall clock, UTC microseconds */
    struct timespec started_mono;
    /* results */
    int exit_status; /* the exit code, or minus the signal number, bounded below by -64 */
    const char *termination;
    int64_t finished_us;
    int64_t duration_ms;
};

/* Create WORKSPACE_DIR/outputs, .stdout and .stderr, and start the workload; fails with
 * workload_start when it cannot be executed. */
bool runner_start(const struct workload *w, const struct manifest *m, const char *workspace,
                  int workspace_fd, struct run *r, struct failure *err);

/* Wait at most wall_ms, kill the process group (on expiry, and in any case once the workload
 * ended) and fill the results. Fails (internal) only if the workload cannot be waited for,
 * rather than report an end it did not see. */
bool runner_wait(const struct workload *w, struct run *r, struct failure *err);

#endif
