/* runtime.c - starting and stopping a runtime.
 *
 * Stop order: refuse new servers (stopping), ask every live server to stop
 * with GS_SHUTDOWN (a stop request joins its mailbox, so queued messages
 * are handled first), wait until the live count reaches zero, re-asking
 * every STOP_RESCAN_MS for servers whose gs_start was in flight when the
 * stop began, then join the workers and free the tables.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "futex.h"
#include "internal.h"
#include "alloc.h"

#define STOP_RESCAN_MS 20

/* Runtime tags (1..GS_MAX_RUNTIMES) in use: a tag is part of every pid
 * and timer handle. They are handed out round-robin, as an OS hands out
 * process ids: a runtime started after another stopped takes the next
 * free tag, not the one just freed, so that a pid or timer handle kept
 * from the stopped runtime names nothing in the new one (its slots and
 * timer records start again at generation 1, so with the same tag the
 * first ones would be equal bit for bit). */
static pthread_mutex_t tags_lock = PTHREAD_MUTEX_INITIALIZER;
static bool tags_used[GS_MAX_RUNTIMES + 1];
static uint32_t tag_last; /* the last tag handed out, under tags_lock */
gs_runtime *runtime_by_tag[GS_MAX_RUNTIMES + 1];

static uint32_t tag_take(void)
{
    uint32_t tag = 0;
    pthread_mutex_lock(&tags_lock);
    for (uint32_t i = 1; i <= GS_MAX_RUNTIMES; i++) {
        uint32_t t = (tag_last + i - 1) % GS_MAX_RUNTIMES + 1; /* tag_last + i, in 1..GS_MAX_RUNTIMES */
        if (!tags_used[t]) {
            tags_used[t] = true;
            tag = tag_last = t;
            break;
        }
    }
    pthread_mutex_unlock(&tags_lock);
    return tag;
}

static void tag_give_back(uint32_t tag)
{
    pthread_mutex_lock(&tags_lock);
    tags_used[tag] = false;
    pthread_mutex_unlock(&tags_lock);
}

int gs_runtime_start(gs_runtime **out, const gs_runtime_opts *opts)
{
    if (out == NULL)
        return GS_EINVAL;
    unsigned workers = opts != NULL ? opts->workers : 0;
    if (workers > GS_MAX_WORKERS)
        return GS_EINVAL;
    if (workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        workers = n < 1 ? 1 : n > GS_MAX_WORKERS ? GS_MAX_WORKERS : (unsigned)n;
    }
    gs_runtime *rt = gs_aligned_alloc(64, sizeof(gs_runtime));
    if (rt == NULL)
        return GS_ENOMEM;
    memset(rt, 0, sizeof *rt);
    rt->tag = tag_take();
    if (rt->tag == 0) {
        free(rt);
        return GS_ELIMIT;
    }
    runtime_by_tag[rt->tag] = rt; /* before any server exists: published with its pids */
    static _Atomic uint64_t serials;
    /* relaxed: only uniqueness matters (see thread_cache.c) */
    rt->serial = atomic_fetch_add_explicit(&serials, 1, memory_order_relaxed) + 1;
    rt->nworkers = workers;
    atomic_init(&rt->live, 0);
    atomic_init(&rt->opened, 0);
    atomic_init(&rt->stopping, false);
    log_init(rt);
    int rc = proc_table_init(rt);
    bool replies = false, monitors = false, registry = false, scheduler = false;
    if (rc == GS_OK && (rc = reply_table_init(rt)) == GS_OK)
        replies = true;
    if (rc == GS_OK && (rc = monitors_init(rt)) == GS_OK)
        monitors = true;
    if (rc == GS_OK && (rc = registry_init(rt)) == GS_OK)
        registry = true;
    if (rc == GS_OK && (rc = scheduler_start(rt)) == GS_OK)
        scheduler = true;
    if (rc == GS_OK)
        rc = timers_start(rt);
    if (rc != GS_OK) {
        if (scheduler) {
            scheduler_stop(rt);
            scheduler_destroy(rt);
        }
        if (registry)
            registry_destroy(rt);
        if (monitors)
            monitors_destroy(rt);
        if (replies)
            reply_table_destroy(rt);
        proc_table_destroy(rt);
        log_destroy(rt);
        runtime_by_tag[rt->tag] = NULL;
        tag_give_back(rt->tag);
        free(rt);
        return rc;
    }
    log_write(rt, GS_LOG_INFO, "runtime started with %u workers", workers);
    *out = rt;
    return GS_OK;
}

/* Sends a stop request (no waiter) to every open slot. Returns false if
 * some request could not be allocated (the caller asks again later). */
static bool ask_all_to_stop(gs_runtime *rt)
{
    bool all = true;
    uint32_t high = proc_table_high_water(rt);
    for (uint32_t idx = 0; idx < high; idx++) {
        proc *p = proc_table_at(rt, idx);
        if (p == NULL)
            continue;
        uint64_t w = atomic_load_explicit(&p->ctl, memory_order_acquire);
        if ((w & CTL_OPEN) == 0)
            continue; /* free, or already terminating */
        msg *m = msg_new(rt, MSG_STOP, 0, NULL, 0);
        if (m == NULL) {
            /* No memory for a stop request: flag the server and, if it is
             * idle, schedule it ourselves; it terminates at its next turn.
             * Retried at the next rescan in case it was busy. */
            proc *q;
            if (proc_acquire(rt, pid_make((uint32_t)(w >> 32), rt->tag, idx), CTL_OPEN, &q) == GS_OK) {
                atomic_fetch_or_explicit(&q->ctl, CTL_SHUTDOWN, memory_order_release);
                bool mine = mailbox_claim(&q->mb);
                proc_release(q);
                if (mine)
                    scheduler_make_runnable(rt, q);
            }
            all = false;
            continue;
        }
        m->reason = GS_SHUTDOWN;
        (void)msg_send(rt, pid_make((uint32_t)(w >> 32), rt->tag, idx), m);
    }
    return all;
}

void runtime_wait_enter(gs_runtime *rt)
{
    /* relaxed: what orders it before gs_runtime_stop's look is the send
     * that follows (see gs_runtime_stop). */
    atomic_fetch_add_explicit(&rt->outside_waiters, 1, memory_order_relaxed);
}

void runtime_wait_leave(gs_runtime *rt)
{
    /* release: the waiter's last reads of its reply slot and the pools
     * happen before gs_runtime_stop sees the count drop and frees them. */
    atomic_fetch_sub_explicit(&rt->outside_waiters, 1, memory_order_release);
}

/* After the last server is gone every outcome has been given (a server's
 * exit fails what it still owes with GS_ENOPROC), but the threads that
 * waited for them may still be reading their reply slots. Their count
 * went up before their request went out, so it is visible here: the
 * request reached a server before that server's exit, and the exit's
 * decrement of `live` came before our seq_cst look at it. They are on
 * their way out, so a short sleep per look is enough. */
static void wait_for_outside_waiters(gs_runtime *rt)
{
    while (atomic_load_explicit(&rt->outside_waiters, memory_order_acquire) != 0) {
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
}

int gs_runtime_stop(gs_runtime *rt)
{
    if (rt == NULL)
        return GS_EINVAL;
    worker *w = current_worker();
    proc *cur = current_proc();
    /* From rt's own threads and servers, and from an init that runs
     * inside one of its servers' callbacks (of any runtime, on any
     * thread): the stop would wait for that server. */
    if ((w != NULL && w->rt == rt) || (cur != NULL && (proc_rt(cur) == rt || init_frames_wait_on(rt, GS_NOPID))))
        return GS_EDEADLK;
    atomic_store_explicit(&rt->stopping, true, memory_order_seq_cst);
    log_write(rt, GS_LOG_INFO, "runtime stopping: %u servers alive, %u workers",
              atomic_load_explicit(&rt->live, memory_order_relaxed), rt->nworkers);
    uint64_t opened_at_scan = UINT64_MAX;
    for (;;) {
        uint32_t live = atomic_load_explicit(&rt->live, memory_order_seq_cst);
        if (live == 0)
            break;
        /* Scan again only if servers were opened since the last scan. */
        uint64_t opened = atomic_load_explicit(&rt->opened, memory_order_seq_cst);
        if (opened != opened_at_scan) {
            opened_at_scan = ask_all_to_stop(rt) ? opened : UINT64_MAX;
        }
        uint64_t until = now_ns() + STOP_RESCAN_MS * 1000000ull;
        while ((live = atomic_load_explicit(&rt->live, memory_order_seq_cst)) != 0 && now_ns() < until) {
            struct timespec ts = ns_to_timespec(until);
            futex_wait_until(&rt->live, live, &ts);
        }
    }
    wait_for_outside_waiters(rt);
    /* Workers first: they may still arm deferred call timeouts. The timer
     * thread may still fire into the (empty) runtime, which needs no
     * worker. */
    scheduler_stop(rt);
    timers_stop(rt);
    scheduler_destroy(rt);
    log_write(rt, GS_LOG_INFO, "runtime stopped");
    registry_destroy(rt);
    monitors_destroy(rt);
    proc_table_destroy(rt);
    reply_table_destroy(rt);
    log_destroy(rt);
    runtime_by_tag[rt->tag] = NULL;
    tag_give_back(rt->tag);
    free(rt);
    return GS_OK;
}
