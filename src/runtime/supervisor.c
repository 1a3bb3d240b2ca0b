/* supervisor.c - OTP supervisors on top of the public API.
 *
 * A supervisor is an ordinary server (gs_supervisor_ops) that traps exits
 * and links to every child it starts. A child's exit reaches it as a
 * GS_TAG_EXIT message; the child's restart type and the supervisor's
 * strategy decide what happens next, within the restart intensity.
 *
 * Children live in a slot array: a doubly linked list over the slots keeps
 * the start order, and two chained hash tables (id -> slot, pid -> slot)
 * keep lookups O(1), so a supervisor with 100,000 children (one server per
 * connection) starts, finds and removes any of them in constant time.
 *
 * Stopping a child: gs_unlink (so its exit signal is not taken for a
 * crash), then gs_kill (shutdown_ms 0) or gs_stop with GS_SHUTDOWN and
 * shutdown_ms, then gs_kill if that timed out ("forced"). The supervisor
 * waits until the child is really gone (its names released) before it
 * goes on, as OTP's supervisor waits for the 'EXIT'. That wait holds the
 * supervisor's worker (see supervisor.h).
 *
 * Run-time requests (start_child, terminate_child, which_child) are
 * gs_calls with private tags below GS_TAG_RUNTIME_BASE.
 *
 * Only log_write is taken from the runtime's internals; everything else
 * goes through the public API.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <inttypes.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "alloc.h"

/* Private call tags (below the runtime's range, unlikely to clash). */
#define SUP_TAG_START_CHILD 0xFFFE0001u
#define SUP_TAG_TERMINATE_CHILD 0xFFFE0002u
#define SUP_TAG_WHICH_CHILD 0xFFFE0003u

#define NIL (-1)

typedef struct sup_child {
    char *id;
    char *name; /* NULL: none */
    const gs_server_ops *ops;
    const void *arg;
    gs_restart restart;
    int shutdown_ms;
    gs_pid pid;        /* GS_NOPID while not running */
    uint32_t id_hash;
    int32_t prev, next; /* start order */
    int32_t id_chain;   /* id hash chain; free list link for free slots */
    int32_t pid_chain;  /* pid hash chain (running children only) */
    bool used;
} sup_child;

typedef struct sup_state {
    gs_runtime *rt;
    gs_pid self;
    gs_strategy strategy;
    int intensity;
    int period_ms;
    size_t max_children;

    sup_child *ch;
    int32_t cap;
    int32_t free_head;
    int32_t count; /* children known (running or not) */
    int32_t head, tail;

    int32_t *id_tab, *pid_tab;
    uint32_t nbuckets; /* power of two */

    /* restart times (ms, monotonic) within the period: a queue */
    int64_t *restarts;
    size_t r_head, r_len, r_cap;
} sup_state;

/* Wire format of a start_child request: the spec, then the id and name
 * bytes (NUL-terminated), so the request is self-contained. */
typedef struct start_req {
    const gs_server_ops *ops;
    const void *arg;
    int32_t restart;
    int32_t shutdown_ms;
    uint32_t id_len;
    uint32_t name_len; /* UINT32_MAX: no name */
} start_req;

typedef struct sup_reply {
    int32_t rc;
    gs_pid pid;
} sup_reply;

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pause_us(long us)
{
    struct timespec ts = {0, us * 1000};
    nanosleep(&ts, NULL);
}

static uint32_t hash_str(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

static uint32_t hash_pid(gs_pid p)
{
    uint64_t x = p * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(x >> 32);
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = gs_malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

static const char *strategy_name(gs_strategy s)
{
    switch (s) {
    case GS_ONE_FOR_ONE: return "one_for_one";
    case GS_ONE_FOR_ALL: return "one_for_all";
    default: return "rest_for_one";
    }
}

static bool reason_is_clean(int reason)
{
    return reason == GS_NORMAL || reason == GS_SHUTDOWN;
}

static bool valid_shutdown(int ms)
{
    return ms == GS_INFINITY || (ms >= 0 && ms <= GS_TIMEOUT_MAX_MS);
}

static bool valid_restart(int r)
{
    return r == GS_PERMANENT || r == GS_TRANSIENT || r == GS_TEMPORARY;
}

/* ------------------------------------------------------------------ */
/* Child table                                                         */
/* ------------------------------------------------------------------ */

static int32_t id_find(const sup_state *s, const char *id)
{
    if (s->nbuckets == 0)
        return NIL;
    uint32_t h = hash_str(id);
    for (int32_t i = s->id_tab[h & (s->nbuckets - 1)]; i != NIL; i = s->ch[i].id_chain)
        if (s->ch[i].id_hash == h && strcmp(s->ch[i].id, id) == 0)
            return i;
    return NIL;
}

static int32_t pid_find(const sup_state *s, gs_pid pid)
{
    if (s->nbuckets == 0 || pid == GS_NOPID)
        return NIL;
    for (int32_t i = s->pid_tab[hash_pid(pid) & (s->nbuckets - 1)]; i != NIL; i = s->ch[i].pid_chain)
        if (s->ch[i].pid == pid)
            return i;
    return NIL;
}

static void id_insert(sup_state *s, int32_t i)
{
    int32_t *b = &s->id_tab[s->ch[i].id_hash & (s->nbuckets - 1)];
    s->ch[i].id_chain = *b;
    *b = i;
}

static void id_remove(sup_state *s, int32_t i)
{
    int32_t *at = &s->id_tab[s->ch[i].id_hash & (s->nbuckets - 1)];
    while (*at != i)
        at = &s->ch[*at].id_chain;
    *at = s->ch[i].id_chain;
    s->ch[i].id_chain = NIL;
}

static void pid_insert(sup_state *s, int32_t i)
{
    int32_t *b = &s->pid_tab[hash_pid(s->ch[i].pid) & (s->nbuckets - 1)];
    s->ch[i].pid_chain = *b;
    *b = i;
}

static void pid_remove(sup_state *s, int32_t i)
{
    if (s->ch[i].pid == GS_NOPID)
        return;
    int32_t *at = &s->pid_tab[hash_pid(s->ch[i].pid) & (s->nbuckets - 1)];
    while (*at != NIL && *at != i)
        at = &s->ch[*at].pid_chain;
    if (*at == i)
        *at = s->ch[i].pid_chain;
    s->ch[i].pid_chain = NIL;
}

/* Sets (or clears, with GS_NOPID) a child's pid, keeping the pid index. */
static void set_pid(sup_state *s, int32_t i, gs_pid pid)
{
    pid_remove(s, i);
    s->ch[i].pid = pid;
    if (pid != GS_NOPID)
        pid_insert(s, i);
}

/* Makes the hash tables at least as large as the slot array. */
static int tables_fit(sup_state *s, uint32_t want)
{
    if (want <= s->nbuckets)
        return GS_OK;
    uint32_t nb = s->nbuckets ? s->nbuckets : 16;
    while (nb < want)
        nb *= 2;
    int32_t *idt = gs_malloc(nb * sizeof *idt);
    int32_t *pdt = gs_malloc(nb * sizeof *pdt);
    if (idt == NULL || pdt == NULL) {
        free(idt);
        free(pdt);
        return GS_ENOMEM;
    }
    for (uint32_t k = 0; k < nb; k++)
        idt[k] = pdt[k] = NIL;
    free(s->id_tab);
    free(s->pid_tab);
    s->id_tab = idt;
    s->pid_tab = pdt;
    s->nbuckets = nb;
    for (int32_t i = s->head; i != NIL; i = s->ch[i].next) {
        id_insert(s, i);
        if (s->ch[i].pid != GS_NOPID)
            pid_insert(s, i);
    }
    return GS_OK;
}

/* A new slot at the end of the start order, with copies of id and name. */
static int child_add(sup_state *s, const char *id, const char *name, const gs_server_ops *ops,
                     const void *arg, gs_restart restart, int shutdown_ms, int32_t *out)
{
    if (s->free_head == NIL) {
        if (s->cap >= INT32_MAX / 2)
            return GS_ENOMEM;
        int32_t cap = s->cap ? s->cap * 2 : 8;
        sup_child *grown = gs_realloc(s->ch, (size_t)cap * sizeof *grown);
        if (grown == NULL)
            return GS_ENOMEM;
        s->ch = grown;
        for (int32_t k = cap - 1; k >= s->cap; k--) {
            s->ch[k].used = false;
            s->ch[k].id_chain = s->free_head;
            s->free_head = k;
        }
        s->cap = cap;
    }
    if (tables_fit(s, (uint32_t)s->cap) != GS_OK)
        return GS_ENOMEM;
    char *idc = dup_str(id);
    char *namec = name != NULL ? dup_str(name) : NULL;
    if (idc == NULL || (name != NULL && namec == NULL)) {
        free(idc);
        free(namec);
        return GS_ENOMEM;
    }
    int32_t i = s->free_head;
    sup_child *c = &s->ch[i];
    s->free_head = c->id_chain;
    *c = (sup_child){.id = idc,
                 .name = namec,
                 .ops = ops,
                 .arg = arg,
                 .restart = restart,
                 .shutdown_ms = shutdown_ms,
                 .pid = GS_NOPID,
                 .id_hash = hash_str(idc),
                 .prev = s->tail,
                 .next = NIL,
                 .id_chain = NIL,
                 .pid_chain = NIL,
                 .used = true};
    if (s->tail != NIL)
        s->ch[s->tail].next = i;
    else
        s->head = i;
    s->tail = i;
    id_insert(s, i);
    s->count++;
    *out = i;
    return GS_OK;
}

/* Forgets a (not running) child. */
static void child_remove(sup_state *s, int32_t i)
{
    sup_child *c = &s->ch[i];
    set_pid(s, i, GS_NOPID);
    id_remove(s, i);
    if (c->prev != NIL)
        s->ch[c->prev].next = c->next;
    else
        s->head = c->next;
    if (c->next != NIL)
        s->ch[c->next].prev = c->prev;
    else
        s->tail = c->prev;
    free(c->id);
    free(c->name);
    c->id = c->name = NULL;
    c->used = false;
    c->id_chain = s->free_head;
    s->free_head = i;
    s->count--;
}

static void sup_free(sup_state *s)
{
    for (int32_t i = s->head; i != NIL; i = s->ch[i].next) {
        free(s->ch[i].id);
        free(s->ch[i].name);
    }
    free(s->ch);
    free(s->id_tab);
    free(s->pid_tab);
    free(s->restarts);
    s->ch = NULL;
    s->id_tab = s->pid_tab = NULL;
    s->restarts = NULL;
    s->head = s->tail = NIL;
    s->count = 0;
}

/* ------------------------------------------------------------------ */
/* Starting and stopping one child                                     */
/* ------------------------------------------------------------------ */

/* Waits until `name` no longer points at `pid` (its server is in the
 * middle of exiting: names are released before the exit completes). */
static void wait_name_released(gs_runtime *rt, const char *name, gs_pid pid)
{
    int64_t end = mono_ms() + 10000;
    gs_pid cur;
    while (gs_whereis(rt, name, &cur) == GS_OK && cur == pid && mono_ms() < end)
        pause_us(50);
}

/* Stops a running child and waits until it is gone. `unlink`: remove the
 * link first, so its exit signal is ignored (not needed when the
 * supervisor itself is exiting). */
static void stop_child(gs_ctx *ctx, sup_state *s, int32_t i, bool unlink)
{
    sup_child *c = &s->ch[i];
    gs_pid pid = c->pid;
    if (pid == GS_NOPID)
        return;
    set_pid(s, i, GS_NOPID);
    if (unlink)
        (void)gs_unlink(ctx, pid);
    char sp[48], cp[48];
    gs_pid_format(s->self, sp, sizeof sp);
    gs_pid_format(pid, cp, sizeof cp);
    if (c->shutdown_ms == 0) {
        int rc = gs_kill(s->rt, pid);
        (void)gs_stop(s->rt, pid, GS_SHUTDOWN, GS_INFINITY); /* waits for the end */
        if (rc == GS_OK)
            log_write(s->rt, GS_LOG_INFO, "supervisor %s: child '%s' %s terminated with reason %d (%s): "
                      "brutal kill, terminate skipped", sp, c->id, cp, GS_KILLED, gs_strerror(GS_KILLED));
        else
            log_write(s->rt, GS_LOG_INFO, "supervisor %s: child '%s' %s was already gone", sp, c->id, cp);
    } else {
        int rc = gs_stop(s->rt, pid, GS_SHUTDOWN, c->shutdown_ms);
        if (rc == GS_ETIMEDOUT) {
            int krc = gs_kill(s->rt, pid);
            (void)gs_stop(s->rt, pid, GS_SHUTDOWN, GS_INFINITY);
            if (krc == GS_OK)
                log_write(s->rt, GS_LOG_WARNING,
                          "supervisor %s: child '%s' %s did not stop within %d ms: forced "
                          "(terminate skipped; removed when its current callback returned)",
                          sp, c->id, cp, c->shutdown_ms);
            else
                log_write(s->rt, GS_LOG_WARNING,
                          "supervisor %s: child '%s' %s did not stop within %d ms; it was already "
                          "terminating and has finished",
                          sp, c->id, cp, c->shutdown_ms);
        } else if (rc == GS_OK) {
            log_write(s->rt, GS_LOG_INFO, "supervisor %s: child '%s' %s terminated with reason %d (%s)", sp,
                      c->id, cp, GS_SHUTDOWN, gs_strerror(GS_SHUTDOWN));
        } else {
            log_write(s->rt, GS_LOG_INFO, "supervisor %s: child '%s' %s was already gone", sp, c->id, cp);
        }
    }
    if (c->name != NULL)
        wait_name_released(s->rt, c->name, pid);
}

/* Starts (or restarts) child i: start linked, then register. On failure
 * the child is not running and the error is returned. */
static int start_child_proc(gs_ctx *ctx, sup_state *s, int32_t i)
{
    char sp[48], cp[48];
    gs_pid_format(s->self, sp, sizeof sp);
    gs_pid pid = GS_NOPID;
    /* Linked before it can take a message: a child that exits right after
     * its init is an exit signal, handled as any (not a start error). */
    int rc = server_start_linked(ctx, s->ch[i].ops, s->ch[i].arg, &pid);
    if (rc != GS_OK) {
        if (rc != GS_ESHUTDOWN)
            log_write(s->rt, GS_LOG_ERROR, "supervisor %s: child '%s' failed to start: %d (%s)", sp,
                      s->ch[i].id, rc, gs_strerror(rc));
        return rc;
    }
    set_pid(s, i, pid);
    if (s->ch[i].name != NULL) {
        rc = gs_register(s->rt, s->ch[i].name, pid);
        /* GS_ENOPROC: it has exited already; its exit signal is on the
         * way and is handled as any exit (a restart, if its type says). */
        if (rc != GS_OK && rc != GS_ENOPROC) {
            log_write(s->rt, GS_LOG_ERROR, "supervisor %s: child '%s' %s could not register name '%s': %d (%s)",
                      sp, s->ch[i].id, gs_pid_format(pid, cp, sizeof cp), s->ch[i].name, rc, gs_strerror(rc));
            stop_child(ctx, s, i, true);
            return rc;
        }
    }
    log_write(s->rt, GS_LOG_INFO, "supervisor %s: child '%s' started as %s", sp, s->ch[i].id,
              gs_pid_format(pid, cp, sizeof cp));
    return GS_OK;
}

/* Stops every running child in reverse start order. */
static void stop_all(gs_ctx *ctx, sup_state *s, bool unlink)
{
    for (int32_t i = s->tail; i != NIL; i = s->ch[i].prev)
        stop_child(ctx, s, i, unlink);
}

/* ------------------------------------------------------------------ */
/* Restarts                                                            */
/* ------------------------------------------------------------------ */

/* Records a restart; false if it makes more than `intensity` restarts
 * within `period_ms`. */
static bool restart_allowed(sup_state *s)
{
    int64_t now = mono_ms();
    while (s->r_len > 0 && now - s->restarts[s->r_head] >= s->period_ms) {
        s->r_head = (s->r_head + 1) % s->r_cap;
        s->r_len--;
    }
    if ((int64_t)s->r_len + 1 > s->intensity)
        return false;
    if (s->r_len == s->r_cap) {
        size_t cap = s->r_cap ? s->r_cap * 2 : 8;
        int64_t *q = gs_malloc(cap * sizeof *q);
        if (q == NULL)
            return false;
        for (size_t k = 0; k < s->r_len; k++)
            q[k] = s->restarts[(s->r_head + k) % s->r_cap];
        free(s->restarts);
        s->restarts = q;
        s->r_head = 0;
        s->r_cap = cap;
    }
    s->restarts[(s->r_head + s->r_len) % s->r_cap] = now;
    s->r_len++;
    return true;
}

/* Gives up: stops every child and makes the supervisor exit GS_SHUTDOWN. */
static int give_up(gs_ctx *ctx, sup_state *s)
{
    char sp[48];
    log_write(s->rt, GS_LOG_ERROR,
              "supervisor %s: restart intensity reached (more than %d restarts within %d ms): "
              "stopping all children and shutting down",
              gs_pid_format(s->self, sp, sizeof sp), s->intensity, s->period_ms);
    stop_all(ctx, s, false); /* exiting: their exit signals no longer matter */
    gs_set_exit_reason(ctx, GS_SHUTDOWN);
    return GS_STOP;
}

/* Restarts after child `ci` exited (it is not running any more), by the
 * strategy. Each attempt counts against the intensity, and so does each
 * child whose init fails during it. */
static int restart(gs_ctx *ctx, sup_state *s, int32_t ci)
{
    char sp[48];
    gs_pid_format(s->self, sp, sizeof sp);
    int32_t first = ci;
    if (s->strategy != GS_ONE_FOR_ONE) {
        first = s->strategy == GS_ONE_FOR_ALL ? s->head : ci;
        /* Stop the others of the group in reverse order; temporary ones
         * stopped this way are not restarted. */
        int32_t i = s->tail;
        for (;;) {
            int32_t prev = s->ch[i].prev;
            bool last = i == first;
            if (i != ci && s->ch[i].pid != GS_NOPID) {
                stop_child(ctx, s, i, true);
                if (s->ch[i].restart == GS_TEMPORARY) {
                    if (first == i)
                        first = s->ch[i].next;
                    child_remove(s, i);
                }
            }
            if (last || prev == NIL)
                break;
            i = prev;
        }
    }
    for (;;) {
        if (!restart_allowed(s))
            return give_up(ctx, s);
        log_write(s->rt, GS_LOG_INFO, "supervisor %s: restarting child '%s' (%s)", sp, s->ch[ci].id,
                  strategy_name(s->strategy));
        bool failed = false;
        int32_t end = s->strategy == GS_ONE_FOR_ONE ? s->ch[ci].next : NIL;
        for (int32_t i = first; i != end; i = s->ch[i].next) {
            if (s->ch[i].pid != GS_NOPID)
                continue; /* started by an earlier attempt */
            int rc = start_child_proc(ctx, s, i);
            if (rc == GS_ESHUTDOWN)
                return GS_OK; /* the runtime is stopping: so will we */
            if (rc != GS_OK) {
                failed = true; /* counts as one more restart: try again */
                break;
            }
        }
        if (!failed)
            return GS_OK;
    }
}

/* A linked server exited. */
static int on_exit_signal(gs_ctx *ctx, sup_state *s, const gs_exit_signal *e)
{
    int32_t i = pid_find(s, e->pid);
    if (i == NIL) {
        /* Not a child: our parent or another linked server. Behave as a
         * server that does not trap exits would. */
        if (e->reason == GS_NORMAL)
            return GS_OK;
        gs_set_exit_reason(ctx, e->reason);
        return GS_STOP;
    }
    sup_child *c = &s->ch[i];
    char sp[48], cp[48];
    gs_pid_format(s->self, sp, sizeof sp);
    gs_pid_format(e->pid, cp, sizeof cp);
    bool clean = reason_is_clean(e->reason);
    log_write(s->rt, clean ? GS_LOG_INFO : GS_LOG_ERROR, "supervisor %s: child '%s' %s terminated with reason %d (%s)",
              sp, c->id, cp, e->reason, gs_strerror(e->reason));
    set_pid(s, i, GS_NOPID);
    bool again = c->restart == GS_PERMANENT || (c->restart == GS_TRANSIENT && !clean);
    if (!again) {
        child_remove(s, i);
        return GS_OK;
    }
    return restart(ctx, s, i);
}

/* ------------------------------------------------------------------ */
/* Callbacks                                                           */
/* ------------------------------------------------------------------ */

static int check_child_spec(const gs_child_spec *c)
{
    if (c->id == NULL || c->id[0] == '\0' || c->ops == NULL || !valid_restart((int)c->restart) ||
        !valid_shutdown(c->shutdown_ms))
        return GS_EINVAL;
    if (c->name != NULL && (c->name[0] == '\0' || strlen(c->name) > GS_NAME_MAX))
        return GS_EINVAL;
    return GS_OK;
}

static int sup_init(gs_ctx *ctx, void *state, const void *arg)
{
    sup_state *s = state;
    const gs_sup_spec *spec = arg;
    if (spec == NULL || (spec->strategy != GS_ONE_FOR_ONE && spec->strategy != GS_ONE_FOR_ALL &&
                         spec->strategy != GS_REST_FOR_ONE) ||
        spec->intensity < 0 || spec->period_ms <= 0 || (spec->children == NULL && spec->nchildren > 0) ||
        spec->nchildren > (size_t)INT32_MAX / 4 ||
        (spec->max_children != 0 && spec->nchildren > spec->max_children))
        return GS_EINVAL;
    for (size_t k = 0; k < spec->nchildren; k++)
        if (check_child_spec(&spec->children[k]) != GS_OK)
            return GS_EINVAL;

    s->rt = gs_ctx_runtime(ctx);
    s->self = gs_self(ctx);
    s->strategy = spec->strategy;
    s->intensity = spec->intensity;
    s->period_ms = spec->period_ms;
    s->max_children = spec->max_children;
    s->free_head = s->head = s->tail = NIL;

    int rc = GS_OK;
    for (size_t k = 0; k < spec->nchildren && rc == GS_OK; k++) {
        const gs_child_spec *c = &spec->children[k];
        int32_t i;
        if (id_find(s, c->id) != NIL)
            rc = GS_EEXIST;
        else
            rc = child_add(s, c->id, c->name, c->ops, c->arg, c->restart, c->shutdown_ms, &i);
    }
    if (rc != GS_OK) {
        sup_free(s);
        return rc;
    }
    gs_trap_exits(ctx, 1);
    for (int32_t i = s->head; i != NIL; i = s->ch[i].next) {
        rc = start_child_proc(ctx, s, i);
        if (rc != GS_OK) {
            stop_all(ctx, s, false); /* we never start: their signals do not matter */
            sup_free(s);
            return rc;
        }
    }
    return GS_OK;
}

static void sup_terminate(gs_ctx *ctx, void *state, int reason)
{
    sup_state *s = state;
    stop_all(ctx, s, false); /* closed: exit signals cannot reach us any more */
    sup_free(s);
}

static int sup_info(gs_ctx *ctx, void *state, const gs_msg *m)
{
    if (m->tag != GS_TAG_EXIT || m->len != sizeof(gs_exit_signal))
        return GS_OK;
    gs_exit_signal e;
    memcpy(&e, m->data, sizeof e);
    return on_exit_signal(ctx, state, &e);
}

static int reply_with(gs_runtime *rt, gs_from from, int rc, gs_pid pid)
{
    sup_reply r = {.rc = rc, .pid = pid};
    (void)gs_reply(rt, from, &r, sizeof r);
    return GS_OK;
}

static int call_start_child(gs_ctx *ctx, sup_state *s, const gs_msg *m, gs_from from)
{
    start_req q;
    if (m->len < sizeof q)
        return reply_with(s->rt, from, GS_EINVAL, GS_NOPID);
    memcpy(&q, m->data, sizeof q);
    bool named = q.name_len != UINT32_MAX;
    size_t need = sizeof q + (size_t)q.id_len + 1 + (named ? (size_t)q.name_len + 1 : 0);
    if (m->len != need || !valid_restart(q.restart) || !valid_shutdown(q.shutdown_ms) || q.ops == NULL)
        return reply_with(s->rt, from, GS_EINVAL, GS_NOPID);
    const char *id = (const char *)m->data + sizeof q;
    const char *name = named ? id + q.id_len + 1 : NULL;
    if (id[q.id_len] != '\0' || (name != NULL && name[q.name_len] != '\0'))
        return reply_with(s->rt, from, GS_EINVAL, GS_NOPID);
    if (id_find(s, id) != NIL)
        return reply_with(s->rt, from, GS_EEXIST, GS_NOPID);
    if (s->max_children != 0 && (size_t)s->count >= s->max_children)
        return reply_with(s->rt, from, GS_EAGAIN, GS_NOPID);
    int32_t i;
    int rc = child_add(s, id, name, q.ops, q.arg, (gs_restart)q.restart, q.shutdown_ms, &i);
    if (rc != GS_OK)
        return reply_with(s->rt, from, rc, GS_NOPID);
    rc = start_child_proc(ctx, s, i);
    gs_pid pid = s->ch[i].pid;
    if (rc != GS_OK)
        child_remove(s, i);
    return reply_with(s->rt, from, rc, rc == GS_OK ? pid : GS_NOPID);
}

static int sup_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    sup_state *s = state;
    switch (m->tag) {
    case SUP_TAG_START_CHILD:
        return call_start_child(ctx, s, m, from);
    case SUP_TAG_TERMINATE_CHILD:
    case SUP_TAG_WHICH_CHILD: {
        if (m->len == 0 || ((const char *)m->data)[m->len - 1] != '\0')
            return reply_with(s->rt, from, GS_EINVAL, GS_NOPID);
        int32_t i = id_find(s, m->data);
        if (i == NIL)
            return reply_with(s->rt, from, GS_ENOENT, GS_NOPID);
        if (m->tag == SUP_TAG_WHICH_CHILD) {
            gs_pid pid = s->ch[i].pid;
            return reply_with(s->rt, from, pid != GS_NOPID ? GS_OK : GS_ENOPROC, pid);
        }
        stop_child(ctx, s, i, true);
        child_remove(s, i);
        return reply_with(s->rt, from, GS_OK, GS_NOPID);
    }
    default:
        return reply_with(s->rt, from, GS_ENOTSUP, GS_NOPID);
    }
}

const gs_server_ops gs_supervisor_ops = {
    .name = "supervisor",
    .state_size = sizeof(sup_state),
    .init = sup_init,
    .handle_call = sup_call,
    .handle_info = sup_info,
    .terminate = sup_terminate,
};

/* ------------------------------------------------------------------ */
/* API                                                                 */
/* ------------------------------------------------------------------ */

int gs_supervisor_start(gs_runtime *rt, const gs_sup_spec *spec, gs_pid *out)
{
    if (rt == NULL || spec == NULL)
        return GS_EINVAL;
    return gs_start(rt, &gs_supervisor_ops, spec, out);
}

static int sup_request(gs_runtime *rt, gs_pid sup, uint32_t tag, const void *data, size_t len, gs_pid *out)
{
    sup_reply r = {.rc = GS_EINVAL, .pid = GS_NOPID};
    size_t got = 0;
    int rc = gs_call(rt, sup, tag, data, len, &r, sizeof r, &got, GS_INFINITY);
    if (rc != GS_OK)
        return rc;
    if (got != sizeof r)
        return GS_ENOTSUP; /* not a supervisor */
    if (out != NULL && r.rc == GS_OK)
        *out = r.pid;
    return r.rc;
}

int gs_supervisor_start_child(gs_runtime *rt, gs_pid sup, const gs_child_spec *child, gs_pid *out)
{
    if (rt == NULL || child == NULL || check_child_spec(child) != GS_OK)
        return GS_EINVAL;
    size_t id_len = strlen(child->id);
    size_t name_len = child->name != NULL ? strlen(child->name) : 0;
    if (id_len >= UINT32_MAX || id_len > GS_MSG_MAX / 2)
        return GS_EINVAL;
    size_t len = sizeof(start_req) + id_len + 1 + (child->name ? name_len + 1 : 0);
    unsigned char stackbuf[512];
    unsigned char *buf = len <= sizeof stackbuf ? stackbuf : gs_malloc(len);
    if (buf == NULL)
        return GS_ENOMEM;
    start_req q = {.ops = child->ops,
                   .arg = child->arg,
                   .restart = (int32_t)child->restart,
                   .shutdown_ms = child->shutdown_ms,
                   .id_len = (uint32_t)id_len,
                   .name_len = child->name ? (uint32_t)name_len : UINT32_MAX};
    memcpy(buf, &q, sizeof q);
    memcpy(buf + sizeof q, child->id, id_len + 1);
    if (child->name != NULL)
        memcpy(buf + sizeof q + id_len + 1, child->name, name_len + 1);
    int rc = sup_request(rt, sup, SUP_TAG_START_CHILD, buf, len, out);
    if (buf != stackbuf)
        free(buf);
    return rc;
}

int gs_supervisor_terminate_child(gs_runtime *rt, gs_pid sup, const char *id)
{
    if (rt == NULL || id == NULL)
        return GS_EINVAL;
    return sup_request(rt, sup, SUP_TAG_TERMINATE_CHILD, id, strlen(id) + 1, NULL);
}

int gs_supervisor_which_child(gs_runtime *rt, gs_pid sup, const char *id, gs_pid *out)
{
    if (rt == NULL || id == NULL || out == NULL)
        return GS_EINVAL;
    return sup_request(rt, sup, SUP_TAG_WHICH_CHILD, id, strlen(id) + 1, out);
}
