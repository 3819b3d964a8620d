#include "runner.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fileio.h"

/* --- the environment and argv ---------------------------------------------------------------- */

struct strings {
    char **items;
    size_t count;
};

static void strings_free(struct strings *s)
{
    for (size_t i = 0; i < s->count; i++)
        free(s->items[i]);
    free(s->items);
}

/* Set NAME=VALUE, replacing an earlier entry of the same name in place (later wins). */
static bool env_set(struct strings *env, const char *name, const char *value)
{
    size_t n = strlen(name);
    char *entry = malloc(n + strlen(value) + 2);
    if (entry == NULL)
        return false;
    sprintf(entry, "%s=%s", name, value);
    for (size_t i = 0; i < env->count; i++)
        if (strncmp(env->items[i], name, n) == 0 && env->items[i][n] == '=') {
            free(env->items[i]);
            env->items[i] = entry;
            return true;
        }
    env->items[env->count++] = entry;
    return true;
}

static bool build_env(const struct workload *w, const struct manifest *m, const char *workspace,
                      struct strings *env)
{
    env->count = 0;
    env->items = calloc(3 + w->nenv + m->nenv + 1, sizeof *env->items);
    if (env->items == NULL)
        return false;
    bool ok = env_set(env, "PATH", "/usr/local/bin:/usr/bin:/bin") &&
              env_set(env, "LANG", "C.UTF-8") && env_set(env, "HOME", workspace);
    for (size_t i = 0; ok && i < w->nenv; i++)
        ok = env_set(env, w->env[i].name, w->env[i].value);
    for (size_t i = 0; ok && i < m->nenv; i++)
        ok = env_set(env, m->env[i].name, m->env[i].value);
    return ok;
}

/* --- the child ------------------------------------------------------------------------------ */

enum child_step { STEP_SESSION = 1, STEP_STDIO, STEP_CHDIR, STEP_LIMIT, STEP_EXEC };

struct child_error {
    int step;
    int error;
};

static const char *step_name(int step)
{
    switch (step) {
    case STEP_SESSION:
        return "starting a new session";
    case STEP_STDIO:
        return "redirecting the standard streams";
    case STEP_CHDIR:
        return "entering its working folder";
    case STEP_LIMIT:
        return "setting a resource limit";
    default:
        return "executing the program";
    }
}

/* Lower a limit to the agent's own hard limit when that is smaller (raising a hard limit
 * fails, and a spec's memory may exceed the enclave, which bounds the workload anyway). */
static int cap(int resource, rlim_t soft, rlim_t hard)
{
    struct rlimit cur;
    if (getrlimit(resource, &cur) != 0)
        return -1;
    if (cur.rlim_max != RLIM_INFINITY) {
        if (soft > cur.rlim_max)
            soft = cur.rlim_max;
        if (hard > cur.rlim_max)
            hard = cur.rlim_max;
    }
    struct rlimit lim = {soft, hard};
    return setrlimit(resource, &lim);
}

static void __attribute__((noreturn)) child_fail(int status_fd, int step)
{
    struct child_error ce = {step, errno};
    ssize_t ignored = write(status_fd, &ce, sizeof ce);
    (void)ignored;
    _exit(127);
}

static void __attribute__((noreturn))
child(const struct workload *w, int workspace_fd, const struct run *r, char **argv, char **envp,
      int status_fd)
{
    /* The agent ignores SIGPIPE (the host may go away); the workload gets the defaults. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        (void)sigaction(sig, &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
    if (setsid() < 0)
        child_fail(status_fd, STEP_SESSION);
    int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(r->stdout_fd, 1) < 0 ||
        dup2(r->stderr_fd, 2) < 0)
        child_fail(status_fd, STEP_STDIO);
    if (w->workdir != NULL ? chdir(w->workdir) != 0 : fchdir(workspace_fd) != 0)
        child_fail(status_fd, STEP_CHDIR);
    /* Nothing of the agent's leaks into the workload (the status pipe closes on exec). */
    struct rlimit nofile;
    int max_fd = getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < 65536
                     ? (int)nofile.rlim_cur
                     : 65536;
    /* close_range where the kernel has it (5.9): two calls, not a thousand. */
    bool ranged = status_fd < 3 || close_range(3, (unsigned)status_fd - 1, 0) == 0;
    if (ranged && close_range((unsigned)status_fd + 1, ~0U, 0) != 0)
        ranged = false;
    for (int fd = 3; !ranged && fd < max_fd; fd++)
        if (fd != status_fd)
            (void)close(fd);
    /* One byte over output_size: an output that reaches the limit is refused by name, never
     * sealed silently truncated at exactly the limit. */
    rlim_t fsize = (rlim_t)w->output_size + 1;
    if (cap(RLIMIT_FSIZE, fsize, fsize) != 0 ||
        cap(RLIMIT_AS, (rlim_t)w->memory, (rlim_t)w->memory) != 0 || cap(RLIMIT_CORE, 0, 0) != 0)
        child_fail(status_fd, STEP_LIMIT);
    /* The hard CPU limit one second above the soft one: SIGXCPU comes first, so the end is
     * reported as resource_limit (with both equal the kernel sends SIGKILL instead). */
    if (w->cpu_seconds > 0 &&
        cap(RLIMIT_CPU, (rlim_t)w->cpu_seconds, (rlim_t)w->cpu_seconds + 1) != 0)
        child_fail(status_fd, STEP_LIMIT);
    execve(argv[0], argv, envp);
    child_fail(status_fd, STEP_EXEC);
}

/* --- the parent ------------------------------------------------------------------------------ */

static int64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t elapsed_ms(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)(now.tv_sec - since->tv_sec) * 1000 + (now.tv_nsec - since->tv_nsec) / 1000000;
}

static int create_stream(int workspace_fd, const char *name)
{
    (void)unlinkat(workspace_fd, name, 0);
    return openat(workspace_fd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
}

bool runner_start(const struct workload *w, const struct manifest *m, const char *workspace,
                  int workspace_fd, struct run *r, struct failure *err)
{
    memset(r, 0, sizeof *r);
    r->pid = -1;
    r->stdout_fd = r->stderr_fd = -1;
    if (mkdirat(workspace_fd, "outputs", 0700) != 0 && errno != EEXIST)
        return fail(err, FAIL_INTERNAL, "cannot create the workspace's outputs folder: %s",
                    strerror(errno));
    r->stdout_fd = create_stream(workspace_fd, ".stdout");
    r->stderr_fd = create_stream(workspace_fd, ".stderr");
    if (r->stdout_fd < 0 || r->stderr_fd < 0)
        return fail(err, FAIL_INTERNAL, "cannot create the standard stream files: %s",
                    strerror(errno));
    struct strings env = {0};
    const char **extra = m->nargs ? m->args : w->args;
    size_t nextra = m->nargs ? m->nargs : w->nargs;
    char **argv = calloc(w->argc + nextra + 1, sizeof *argv);
    if (argv == NULL || !build_env(w, m, workspace, &env)) {
        free(argv);
        strings_free(&env);
        return fail(err, FAIL_INTERNAL, "out of memory");
    }
    for (size_t i = 0; i < w->argc; i++)
        argv[i] = (char *)(uintptr_t)w->argv[i];
    for (size_t i = 0; i < nextra; i++)
        argv[w->argc + i] = (char *)(uintptr_t)extra[i];
    int status[2];
    bool ok = false;
    if (pipe2(status, O_CLOEXEC) != 0) {
        fail(err, FAIL_INTERNAL, "cannot create a pipe: %s", strerror(errno));
        goto out;
    }
    r->started_us = wall_us();
    clock_gettime(CLOCK_MONOTONIC, &r->started_mono);
    pid_t pid = fork();
    if (pid < 0) {
        close(status[0]);
        close(status[1]);
        fail(err, FAIL_WORKLOAD_START, "cannot start the workload: fork: %s", strerror(errno));
        goto out;
    }
    if (pid == 0) {
        close(status[0]);
        child(w, workspace_fd, r, argv, env.items, status[1]);
    }
    close(status[1]);
    r->pid = pid;
    /* The status pipe closes on a successful exec and carries the error otherwise. */
    struct child_error ce;
    ssize_t n = read_full(status[0], &ce, sizeof ce);
    close(status[0]);
    if (n == (ssize_t)sizeof ce) {
        int ignored;
        (void)waitpid(pid, &ignored, 0);
        r->pid = -1;
        /* Name what the step was about: the folder it could not enter, else the program. */
        const char *subject = ce.step == STEP_CHDIR && w->workdir != NULL ? w->workdir : argv[0];
        fail(err, FAIL_WORKLOAD_START, "the workload could not be started: %s %s: %s",
             step_name(ce.step), subject, strerror(ce.error));
        goto out;
    }
    ok = true;
out:
    free(argv);
    strings_free(&env);
    return ok;
}

/* Wait for the workload through a pidfd (Linux 5.3): woken the moment it ends. Returns false,
 * nothing waited for, where there is none (an older kernel, Gramine): the caller polls. */
static bool wait_pidfd(const struct workload *w, struct run *r, int *status, bool *timed_out)
{
    int pidfd = (int)syscall(SYS_pidfd_open, r->pid, 0);
    if (pidfd < 0)
        return false;
    while (true) {
        int64_t left = w->wall_ms - elapsed_ms(&r->started_mono);
        if (left <= 0) {
            *timed_out = true;
            (void)kill(-r->pid, SIGKILL);
            break;
        }
        struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
        int n = poll(&pfd, 1, left > 3600000 ? 3600000 : (int)left); /* at most an hour a call */
        if (n < 0 && errno != EINTR) { /* cannot happen with a valid pidfd: fall back */
            close(pidfd);
            return false;
        }
        if (n > 0)
            break;
    }
    close(pidfd);
    while (waitpid(r->pid, status, 0) < 0 && errno == EINTR)
        ;
    return true;
}

bool runner_wait(const struct workload *w, struct run *r, struct failure *err)
{
    int status = 0;
    bool timed_out = false;
    long pause_us = 100;
    bool waited = wait_pidfd(w, r, &status, &timed_out);
    while (!waited) {
        pid_t done = waitpid(r->pid, &status, WNOHANG);
        if (done == r->pid)
            break;
        if (done < 0 && errno != EINTR) {
            int e = errno;
            (void)kill(-r->pid, SIGKILL);
            r->pid = -1;
            return fail(err, FAIL_INTERNAL, "cannot wait for the workload: %s", strerror(e));
        }
        int64_t left = w->wall_ms - elapsed_ms(&r->started_mono);
        if (left <= 0) {
            timed_out = true;
            (void)kill(-r->pid, SIGKILL);
            while (waitpid(r->pid, &status, 0) < 0 && errno == EINTR)
                ;
            break;
        }
        /* Poll with a growing pause (0.1 ms up to 5 ms): a short workload is noticed at once,
         * a long one costs nothing, and no signal handling is needed. */
        long us = pause_us < left * 1000 ? pause_us : (long)(left * 1000);
        struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
        nanosleep(&ts, NULL);
        if (pause_us < 5000)
            pause_us *= 2;
    }
    /* No process of the workload outlives it. */
    (void)kill(-r->pid, SIGKILL);
    r->finished_us = wall_us();
    if (r->finished_us < r->started_us)
        r->finished_us = r->started_us; /* the wall clock stepped back: keep the receipt ordered */
    r->duration_ms = elapsed_ms(&r->started_mono);
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        r->exit_status = -(sig > 64 ? 64 : sig);
        r->termination = (sig == SIGXFSZ || sig == SIGXCPU) ? "resource_limit" : "signaled";
    } else {
        r->exit_status = WEXITSTATUS(status);
        r->termination = "exited";
    }
    if (timed_out)
        r->termination = "timeout";
    r->pid = -1;
    return true;
}
