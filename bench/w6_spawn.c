/* w6_spawn.c - W6: server creation, memory per server, and stopping.
 *
 * Three timed phases over s counter servers:
 *   spawn  gs_start each one (its init runs before gs_start returns);
 *   cast   one `incr` cast to each;
 *   stop   stop each one and wait until every terminate has run.
 * The stop phase has three ways, chosen with stop=...:
 *   cast   (default) cast `stop` to each; its handle_cast returns GS_STOP;
 *   async  gs_stop(pid, GS_NORMAL, 0) for each: queues the stop request
 *          and returns at once (GS_ETIMEDOUT unless already gone);
 *   sync   gs_stop(pid, GS_NORMAL, 5000) for each: waits for each
 *          terminate in turn (one round trip per server).
 * In the first two the main thread then waits for a semaphore that the
 * last terminate posts. RSS (VmRSS) is read before spawning, after the
 * spawn phase and after the cast phase ("all alive", as the peers do);
 * bytes_per_server uses the latter, bytes_per_server_idle the former.
 * Check: s inits, s terminates, each of which saw state 1.
 */
#include <errno.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

enum { W6_INCR = 1, W6_STOP };

static atomic_llong inits, terminated, saw_one;
static long long expected;
static sem_t all_gone;

static int counter_init(gs_ctx *ctx, void *state, const void *arg)
{
    atomic_fetch_add_explicit(&inits, 1, memory_order_relaxed);
    return GS_OK;
}

static int counter_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    if (m->tag == W6_INCR)
        ++*(int64_t *)state;
    else if (m->tag == W6_STOP)
        return GS_STOP;
    return GS_OK;
}

static void counter_terminate(gs_ctx *ctx, void *state, int reason)
{
    if (*(int64_t *)state == 1 && reason == GS_NORMAL)
        atomic_fetch_add_explicit(&saw_one, 1, memory_order_relaxed);
    if (atomic_fetch_add_explicit(&terminated, 1, memory_order_acq_rel) + 1 == expected)
        sem_post(&all_gone);
}

static const gs_server_ops counter_ops = {
    .name = "w6_counter",
    .state_size = sizeof(int64_t),
    .init = counter_init,
    .handle_cast = counter_cast,
    .terminate = counter_terminate,
};

/* Waits for the last terminate, at most timeout_s seconds. */
static bool wait_all_gone(int timeout_s)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_s;
    while (sem_timedwait(&all_gone, &ts) != 0)
        if (errno != EINTR)
            return false;
    return true;
}

void w6_spawn(bench *b)
{
    int64_t s = bench_param(b, "s");
    const char *how = bench_param_str(b, "stop", "cast");
    int mode = strcmp(how, "cast") == 0 ? 0 : strcmp(how, "async") == 0 ? 1 : strcmp(how, "sync") == 0 ? 2 : -1;
    if (!bench_expect(b, mode >= 0, "stop=%s: want cast, async or sync", how) ||
        !bench_expect(b, s > 0 && s <= (int64_t)GS_MAX_SERVERS - 16, "need 0 < s < GS_MAX_SERVERS"))
        return;
    expected = s;
    sem_init(&all_gone, 0, 0);
    gs_pid *pids = malloc((size_t)s * sizeof *pids);
    if (!bench_expect(b, pids != NULL, "out of memory"))
        return;
    memset(pids, 0, (size_t)s * sizeof *pids); /* resident before the first RSS reading */
    int64_t rss_before = bench_status_kb("VmRSS");

    int64_t t0 = bench_now_ns();
    for (int64_t i = 0; i < s; i++) {
        int rc = gs_start(b->rt, &counter_ops, NULL, &pids[i]);
        if (rc != GS_OK) {
            bench_expect(b, false, "gs_start #%lld: %s", (long long)i, gs_strerror(rc));
            expected = i; /* so that the runtime's shutdown does not wait in vain */
            goto out;
        }
    }
    int64_t t1 = bench_now_ns();
    int64_t rss_spawned = bench_status_kb("VmRSS");

    int64_t cast_errors = 0;
    for (int64_t i = 0; i < s; i++)
        if (gs_cast(b->rt, pids[i], W6_INCR, NULL, 0) != GS_OK)
            cast_errors++;
    int64_t t2 = bench_now_ns();
    int64_t rss_alive = bench_status_kb("VmRSS");

    int64_t t3 = bench_now_ns();
    int64_t stop_errors = 0;
    for (int64_t i = 0; i < s; i++) {
        int rc;
        if (mode == 0) {
            rc = gs_cast(b->rt, pids[i], W6_STOP, NULL, 0);
        } else if (mode == 1) {
            rc = gs_stop(b->rt, pids[i], GS_NORMAL, 0);
            if (rc == GS_ETIMEDOUT)
                rc = GS_OK; /* queued; terminate comes later */
        } else {
            rc = gs_stop(b->rt, pids[i], GS_NORMAL, 5000);
        }
        if (rc != GS_OK)
            stop_errors++;
    }
    bool gone = stop_errors == 0 ? wait_all_gone(120) : false;
    int64_t t4 = bench_now_ns();

    bench_rate(b, s, (t2 - t0) + (t4 - t3));
    bench_set_num(b, "spawn_s", (double)(t1 - t0) / 1e9);
    bench_set_num(b, "cast_s", (double)(t2 - t1) / 1e9);
    bench_set_num(b, "stop_s", (double)(t4 - t3) / 1e9);
    bench_set_num(b, "spawn_per_sec", (double)s / ((double)(t1 - t0) / 1e9));
    bench_set_str(b, "stop", mode == 0 ? "cast+GS_STOP" : mode == 1 ? "gs_stop(timeout 0)" : "gs_stop");
    bench_set_int(b, "rss_before_kb", rss_before);
    bench_set_int(b, "rss_spawned_kb", rss_spawned);
    bench_set_int(b, "rss_alive_kb", rss_alive);
    bench_set_int(b, "rss_peak_kb", bench_status_kb("VmHWM"));
    bench_set_num(b, "bytes_per_server", (double)(rss_alive - rss_before) * 1024.0 / (double)s);
    bench_set_num(b, "bytes_per_server_idle", (double)(rss_spawned - rss_before) * 1024.0 / (double)s);
    bench_expect(b, cast_errors == 0, "%lld incr casts failed", (long long)cast_errors);
    bench_expect(b, stop_errors == 0, "%lld stops failed", (long long)stop_errors);
    bench_expect(b, gone, "not every server terminated within 120 s");
    bench_expect(b, atomic_load(&inits) == s, "%lld inits ran, want %lld", atomic_load(&inits), (long long)s);
    bench_expect(b, atomic_load(&terminated) == s, "%lld servers terminated, want %lld",
                 atomic_load(&terminated), (long long)s);
    bench_expect(b, atomic_load(&saw_one) == s, "%lld terminates saw state 1 (reason normal), want %lld",
                 atomic_load(&saw_one), (long long)s);
out:
    free(pids);
}
