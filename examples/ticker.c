/* ticker.c - an interval timer aimed at a registered name outlives the
 * server behind the name.
 *
 * A supervisor runs one child, a meter registered as "meter". An interval
 * timer ticks to the name every 10 ms (gs_send_interval_name), not to a
 * pid. The meter crashes on its third tick; its supervisor restarts it
 * under a new pid and the same name, and the same timer goes on ticking,
 * now to the new meter. A timer aimed at the first pid (gs_send_interval)
 * would have ended with it. The crash report is kept off the output by a
 * logger that counts it.
 *
 * Prints (pids vary):
 *   ticks to meter <1.1.1>: 3, then it crashed
 *   restarted as <1.1.2>: the same timer ticked on to it (5 ticks)
 *   crash reports logged: 1
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <genserver.h>

enum { TICK = 1 };
enum { TICK_MS = 10, CRASH_AT = 3, AFTER_RESTART = 5 };

static atomic_int ticks[2]; /* per incarnation: the first, and any later */
static atomic_int incarnations;
static atomic_int crash_reports;

typedef struct meter {
    int incarnation;
    int seen;
} meter;

static int meter_init(gs_ctx *ctx, void *state, const void *arg)
{
    (void)ctx;
    (void)arg;
    meter *m = state;
    m->incarnation = atomic_fetch_add(&incarnations, 1);
    return GS_OK;
}

static int meter_info(gs_ctx *ctx, void *state, const gs_msg *msg)
{
    (void)ctx;
    meter *m = state;
    if (msg->tag != TICK)
        return GS_OK;
    atomic_fetch_add(&ticks[m->incarnation == 0 ? 0 : 1], 1);
    if (m->incarnation == 0 && ++m->seen == CRASH_AT)
        return GS_EINVAL; /* a fault: the server crashes, its supervisor restarts it */
    return GS_OK;
}

static const gs_server_ops meter_ops = {
    .name = "meter", .state_size = sizeof(meter), .init = meter_init, .handle_info = meter_info};

static void count_crash_reports(void *user, int level, const char *line)
{
    (void)user;
    if (level == GS_LOG_ERROR && strncmp(line, "crash report", 12) == 0)
        atomic_fetch_add(&crash_reports, 1);
}

static void sleep_ms(int ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* Waits up to 5 s for *v to reach want. */
static int wait_for(atomic_int *v, int want)
{
    for (int waited = 0; waited < 5000 && atomic_load(v) < want; waited++)
        sleep_ms(1);
    return atomic_load(v) >= want;
}

int main(void)
{
    gs_runtime *rt;
    gs_runtime_opts opts = {.workers = 2};
    if (gs_runtime_start(&rt, &opts) != GS_OK)
        return 1;
    gs_set_logger(rt, count_crash_reports, NULL);
    gs_child_spec child = {
        .id = "meter", .ops = &meter_ops, .restart = GS_PERMANENT, .shutdown_ms = 1000, .name = "meter"};
    gs_sup_spec spec = {
        .strategy = GS_ONE_FOR_ONE, .intensity = 3, .period_ms = 5000, .children = &child, .nchildren = 1};
    gs_pid sup, first, second;
    gs_timer t;
    if (gs_supervisor_start(rt, &spec, &sup) != GS_OK || gs_whereis(rt, "meter", &first) != GS_OK ||
        gs_send_interval_name(rt, "meter", TICK, NULL, 0, TICK_MS, &t) != GS_OK)
        return 1;
    if (!wait_for(&incarnations, 2) || !wait_for(&ticks[1], AFTER_RESTART))
        return 1;
    if (gs_whereis(rt, "meter", &second) != GS_OK || second == first)
        return 1;
    char a[32], b[32];
    printf("ticks to meter %s: %d, then it crashed\n", gs_pid_format(first, a, sizeof a),
           atomic_load(&ticks[0]));
    printf("restarted as %s: the same timer ticked on to it (%d ticks)\n", gs_pid_format(second, b, sizeof b),
           AFTER_RESTART);
    gs_cancel_timer(rt, t);
    printf("crash reports logged: %d\n", atomic_load(&crash_reports));
    return gs_runtime_stop(rt) == GS_OK ? 0 : 1;
}
