/* log.c - the runtime's logger: one line per event, to the user's function
 * or, by default, warnings and errors to stderr. Logging is rare (crashes,
 * misuse), so a mutex guards the (fn, user) pair. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

#define LOG_LINE_MAX 512

void log_init(gs_runtime *rt)
{
    pthread_mutex_init(&rt->log_lock, NULL);
    rt->log_fn = NULL;
    rt->log_user = NULL;
}

void log_destroy(gs_runtime *rt)
{
    pthread_mutex_destroy(&rt->log_lock);
}

int gs_set_logger(gs_runtime *rt, gs_log_fn fn, void *user)
{
    if (rt == NULL)
        return GS_EINVAL;
    pthread_mutex_lock(&rt->log_lock);
    rt->log_fn = fn;
    rt->log_user = fn != NULL ? user : NULL;
    pthread_mutex_unlock(&rt->log_lock);
    return GS_OK;
}

static const char *level_name(int level)
{
    switch (level) {
    case GS_LOG_ERROR: return "error";
    case GS_LOG_WARNING: return "warning";
    case GS_LOG_INFO: return "info";
    default: return "debug";
    }
}

void log_write(gs_runtime *rt, int level, const char *fmt, ...)
{
    pthread_mutex_lock(&rt->log_lock);
    gs_log_fn fn = rt->log_fn;
    void *user = rt->log_user;
    pthread_mutex_unlock(&rt->log_lock);
    if (fn == NULL && level > GS_LOG_WARNING)
        return; /* the default logger is quiet below warnings */
    char line[LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (fn != NULL)
        fn(user, level, line);
    else
        fprintf(stderr, "genserver %s: %s\n", level_name(level), line);
}

char *gs_pid_format(gs_pid pid, char *buf, size_t cap)
{
    if (buf == NULL || cap == 0)
        return buf;
    snprintf(buf, cap, "<%" PRIu32 ".%" PRIu32 ".%" PRIu32 ">", pid_tag(pid), pid_index(pid), pid_gen(pid));
    return buf;
}
