/* stress_supervisor.c - randomized kill storms against a supervision tree,
 * with exact accounting of what was restarted (run under ThreadSanitizer).
 *
 * A top one_for_one supervisor holds three supervisors, one per strategy,
 * each with permanent, transient and temporary children. Two threads pick
 * random children and gs_kill them, make them crash, or make them exit
 * normally. An observer server monitors every child instance (each one
 * asks for it in init), so every exit is counted per child, kills
 * included. At the end, per child:
 *   running  => inits == exits + 1 (every exit was followed by a restart)
 *   gone     => inits == exits     (no restart after the last exit)
 *   permanent children are always running; temporary ones have exactly
 *   one init; a transient child is gone only after exiting GS_NORMAL by
 *   itself; which_child gives the pid of the last instance started, and it
 *   answers calls.
 */
#define _GNU_SOURCE 1
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "stress_common.h"

#define NSUPS 3
#define PER_SUP 12
#define NSLOTS (NSUPS * PER_SUP)
#define OPS_PER_THREAD 20000
#define STORM_SECONDS 15.0

enum { WK_CRASH = 1, WK_NORMAL = 2, WK_PING = 3 };

static gs_runtime *g_rt;
static gs_pid g_observer;
static int g_slot_ids[NSLOTS];
static char g_names[NSLOTS][16];

static atomic_int g_inits[NSLOTS];
static atomic_int g_exits[NSLOTS];
static atomic_int g_self_normal[NSLOTS]; /* exits with GS_NORMAL */
static _Atomic gs_pid g_last_pid[NSLOTS];

/* pid -> slot of every live instance, for the observer. */
#define PT_BUCKETS 4096
typedef struct pt_node {
    gs_pid pid;
    int slot;
    struct pt_node *next;
} pt_node;
static pthread_mutex_t g_pt_lock = PTHREAD_MUTEX_INITIALIZER;
static pt_node *g_pt[PT_BUCKETS];

static void pt_put(gs_pid pid, int slot)
{
    pt_node *n = malloc(sizeof *n);
    CHECK(n != NULL);
    n->pid = pid;
    n->slot = slot;
    pthread_mutex_lock(&g_pt_lock);
    pt_node **b = &g_pt[(pid * 0x9E3779B97F4A7C15ull) >> 52];
    n->next = *b;
    *b = n;
    pthread_mutex_unlock(&g_pt_lock);
}

static int pt_take(gs_pid pid)
{
    int slot = -1;
    pthread_mutex_lock(&g_pt_lock);
    for (pt_node **at = &g_pt[(pid * 0x9E3779B97F4A7C15ull) >> 52]; *at; at = &(*at)->next) {
        if ((*at)->pid == pid) {
            pt_node *n = *at;
            *at = n->next;
            slot = n->slot;
            free(n);
            break;
        }
    }
    pthread_mutex_unlock(&g_pt_lock);
    return slot;
}

/* ---- the observer ------------------------------------------------------ */
static atomic_int g_bad_down;

static int obs_info(gs_ctx *ctx, void *state, const gs_msg *msg)
{
    if (msg->tag != GS_TAG_DOWN || msg->len != sizeof(gs_down))
        return GS_OK;
    gs_down d;
    memcpy(&d, msg->data, sizeof d);
    int slot = pt_take(d.pid);
    if (slot < 0) {
        atomic_fetch_add(&g_bad_down, 1);
        return GS_OK;
    }
    if (d.reason == GS_NORMAL)
        atomic_fetch_add(&g_self_normal[slot], 1);
    atomic_fetch_add(&g_exits[slot], 1);
    return GS_OK;
}

static const gs_server_ops obs_ops = {.name = "observer", .handle_info = obs_info};

/* ---- children ------------------------------------------------------------ */
static int wk_init(gs_ctx *ctx, void *state, const void *arg)
{
    int slot = *(const int *)arg;
    gs_pid self = gs_self(ctx);
    pt_put(self, slot);
    if (gs_monitor(gs_ctx_runtime(ctx), g_observer, self, NULL) != GS_OK) {
        fprintf(stderr, "gs_monitor failed in init\n");
        exit(1);
    }
    *(int *)state = slot;
    atomic_fetch_add(&g_inits[slot], 1);
    atomic_store(&g_last_pid[slot], self);
    return GS_OK;
}

static int wk_cast(gs_ctx *ctx, void *state, const gs_msg *msg)
{
    if (msg->tag == WK_CRASH)
        return GS_EINVAL;
    if (msg->tag == WK_NORMAL)
        return GS_STOP;
    return GS_OK;
}

static int wk_call(gs_ctx *ctx, void *state, const gs_msg *msg, gs_from from)
{
    int slot = *(int *)state;
    gs_reply(gs_ctx_runtime(ctx), from, &slot, sizeof slot);
    return GS_OK;
}

static const gs_server_ops wk_ops = {
    .name = "wk", .state_size = sizeof(int), .init = wk_init, .handle_cast = wk_cast, .handle_call = wk_call};

static gs_restart restart_of(int slot)
{
    static const gs_restart r[PER_SUP] = {GS_PERMANENT, GS_TRANSIENT, GS_PERMANENT, GS_TEMPORARY,
                                          GS_PERMANENT, GS_TRANSIENT, GS_PERMANENT, GS_TEMPORARY,
                                          GS_PERMANENT, GS_TRANSIENT, GS_PERMANENT, GS_TEMPORARY};
    return r[slot % PER_SUP];
}

static void quiet_log(void *user, int level, const char *line)
{
    (void)user;
    (void)level;
    (void)line;
}

/* ---- the tree --------------------------------------------------------------- */
static gs_child_spec g_leaf[NSUPS][PER_SUP];
static gs_sup_spec g_sub[NSUPS];
static gs_child_spec g_top_children[NSUPS];
static const char *g_sub_ids[NSUPS] = {"one_for_one", "one_for_all", "rest_for_one"};
static gs_pid g_top;

static gs_pid sub_pid(int s)
{
    gs_pid p = GS_NOPID;
    CHECK_RC(gs_supervisor_which_child(g_rt, g_top, g_sub_ids[s], &p), GS_OK);
    return p;
}

/* ---- the storm ---------------------------------------------------------------- */
static atomic_int g_kills, g_crashes, g_normals, g_misses;
static double g_deadline;

static void *storm(void *arg)
{
    uint64_t rng = stress_seed((uint64_t)(uintptr_t)arg);
    gs_pid subs[NSUPS];
    for (int s = 0; s < NSUPS; s++)
        subs[s] = sub_pid(s);
    for (int n = 0; n < OPS_PER_THREAD && stress_now_s() < g_deadline; n++) {
        int slot = (int)(stress_rand(&rng) % NSLOTS);
        int s = slot / PER_SUP;
        gs_pid p = GS_NOPID;
        int rc = gs_supervisor_which_child(g_rt, subs[s], g_names[slot], &p);
        CHECKF(rc == GS_OK || rc == GS_ENOENT, "which_child returned %d (%s)", rc, gs_strerror(rc));
        if (rc != GS_OK) {
            atomic_fetch_add(&g_misses, 1);
            continue;
        }
        unsigned what = (unsigned)(stress_rand(&rng) % 100);
        if (what < 45) {
            rc = gs_kill(g_rt, p);
            CHECK_RC2(rc, GS_OK, GS_ENOPROC);
            atomic_fetch_add(&g_kills, 1);
        } else if (what < 99) {
            rc = gs_cast(g_rt, p, WK_CRASH, NULL, 0);
            CHECK_RC2(rc, GS_OK, GS_ENOPROC);
            atomic_fetch_add(&g_crashes, 1);
        } else {
            rc = gs_cast(g_rt, p, WK_NORMAL, NULL, 0);
            CHECK_RC2(rc, GS_OK, GS_ENOPROC);
            atomic_fetch_add(&g_normals, 1);
        }
        if (stress_rand(&rng) % 8 == 0)
            stress_sleep_us((long)(stress_rand(&rng) % 300));
    }
    return NULL;
}

/* Is every child's account settled (no exit or restart in flight)? */
static bool settled(bool report)
{
    for (int slot = 0; slot < NSLOTS; slot++) {
        int s = slot / PER_SUP;
        gs_pid p = GS_NOPID;
        int rc = gs_supervisor_which_child(g_rt, sub_pid(s), g_names[slot], &p);
        int inits = atomic_load(&g_inits[slot]), exits = atomic_load(&g_exits[slot]);
        bool ok = rc == GS_OK ? inits == exits + 1 && p == atomic_load(&g_last_pid[slot])
                              : rc == GS_ENOENT && inits == exits;
        if (!ok) {
            if (report)
                fprintf(stderr, "slot %d (%s, restart %d): which_child %d, inits %d, exits %d\n", slot,
                        g_sub_ids[s], (int)restart_of(slot), rc, inits, exits);
            return false;
        }
    }
    return true;
}

int main(void)
{
    stress_watchdog(120);
    double t0 = stress_now_s();
    gs_runtime_opts o = {.workers = 4}; /* two levels of supervisors may stop children at once */
    CHECK_RC(gs_runtime_start(&g_rt, &o), GS_OK);
    CHECK_RC(gs_set_logger(g_rt, quiet_log, NULL), GS_OK); /* thousands of crash reports */
    CHECK_RC(gs_start(g_rt, &obs_ops, NULL, &g_observer), GS_OK);

    for (int slot = 0; slot < NSLOTS; slot++) {
        g_slot_ids[slot] = slot;
        snprintf(g_names[slot], sizeof g_names[slot], "c%d", slot);
    }
    for (int s = 0; s < NSUPS; s++) {
        for (int k = 0; k < PER_SUP; k++) {
            int slot = s * PER_SUP + k;
            g_leaf[s][k] = (gs_child_spec){.id = g_names[slot],
                                           .ops = &wk_ops,
                                           .arg = &g_slot_ids[slot],
                                           .restart = restart_of(slot),
                                           .shutdown_ms = k % 4 == 3 ? 0 : 5000};
        }
        g_sub[s] = (gs_sup_spec){.strategy = (gs_strategy)s,
                                 .intensity = 1000000000,
                                 .period_ms = 1000,
                                 .children = g_leaf[s],
                                 .nchildren = PER_SUP};
        g_top_children[s] = (gs_child_spec){.id = g_sub_ids[s],
                                            .ops = &gs_supervisor_ops,
                                            .arg = &g_sub[s],
                                            .restart = GS_PERMANENT,
                                            .shutdown_ms = GS_INFINITY};
    }
    gs_sup_spec top = {.strategy = GS_ONE_FOR_ONE, .intensity = 0, .period_ms = 1000,
                       .children = g_top_children, .nchildren = NSUPS};
    CHECK_RC(gs_supervisor_start(g_rt, &top, &g_top), GS_OK);
    gs_pid subs[NSUPS];
    for (int s = 0; s < NSUPS; s++)
        subs[s] = sub_pid(s);

    g_deadline = stress_now_s() + STORM_SECONDS;
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&th[i], NULL, storm, (void *)(uintptr_t)(i + 1)) == 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);

    /* Let every exit and restart in flight land. */
    double until = stress_now_s() + 20;
    int stable = 0;
    while (stable < 3) {
        CHECKF(stress_now_s() < until || settled(true), "the accounts never settled");
        stable = settled(false) ? stable + 1 : 0;
        stress_sleep_us(20000);
    }

    /* Exact checks. */
    int alive = 0, restarts = 0;
    for (int slot = 0; slot < NSLOTS; slot++) {
        int s = slot / PER_SUP;
        gs_restart r = restart_of(slot);
        int inits = atomic_load(&g_inits[slot]), exits = atomic_load(&g_exits[slot]);
        int normals = atomic_load(&g_self_normal[slot]);
        gs_pid p = GS_NOPID;
        int rc = gs_supervisor_which_child(g_rt, subs[s], g_names[slot], &p);
        restarts += inits - 1;
        if (r == GS_PERMANENT)
            CHECKF(rc == GS_OK, "permanent slot %d is gone", slot);
        if (r == GS_TEMPORARY)
            CHECKF(inits == 1, "temporary slot %d was restarted (%d inits)", slot, inits);
        if (r == GS_TRANSIENT && rc == GS_ENOENT)
            CHECKF(normals >= 1, "transient slot %d gone without a normal exit", slot);
        if (rc == GS_OK) {
            CHECKF(inits == exits + 1, "slot %d: running with %d inits, %d exits", slot, inits, exits);
            CHECK(p == atomic_load(&g_last_pid[slot]));
            int got = -1;
            size_t len = 0;
            CHECK_RC(gs_call(g_rt, p, WK_PING, NULL, 0, &got, sizeof got, &len, 10000), GS_OK);
            CHECK(len == sizeof got && got == slot);
            alive++;
        } else {
            CHECK_RC(rc, GS_ENOENT);
            CHECKF(inits == exits, "slot %d: gone with %d inits, %d exits", slot, inits, exits);
        }
    }
    CHECK(atomic_load(&g_bad_down) == 0);
    /* The sub-supervisors never gave up: same pids. */
    for (int s = 0; s < NSUPS; s++)
        CHECK(sub_pid(s) == subs[s]);

    /* Everything stops; no instance is left behind. */
    CHECK_RC(gs_stop(g_rt, g_top, GS_SHUTDOWN, 60000), GS_OK);
    until = stress_now_s() + 10;
    for (;;) {
        int pending = 0;
        for (int slot = 0; slot < NSLOTS; slot++)
            pending += atomic_load(&g_inits[slot]) - atomic_load(&g_exits[slot]);
        if (pending == 0)
            break;
        CHECKF(stress_now_s() < until, "%d children still alive after the tree stopped", pending);
        stress_sleep_us(10000);
    }
    CHECK_RC(gs_runtime_stop(g_rt), GS_OK);
    for (int b = 0; b < PT_BUCKETS; b++)
        CHECK(g_pt[b] == NULL);
    printf("stress_supervisor: OK: %d kills, %d crashes, %d normal exits, %d misses, %d restarts, %d alive, "
           "%.1f s\n",
           atomic_load(&g_kills), atomic_load(&g_crashes), atomic_load(&g_normals), atomic_load(&g_misses),
           restarts, alive, stress_now_s() - t0);
    return 0;
}
