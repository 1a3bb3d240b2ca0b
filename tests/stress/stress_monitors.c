/* stress_monitors.c - monitors, demonitors, links and kills racing, under
 * ThreadSanitizer.
 *
 * 3 workers, NWATCHERS watcher servers that live throughout and record
 * every DOWN they get. NDRIVERS threads each start targets (some trapping
 * exits), monitor them from random watchers (also after they died), link
 * and unlink pairs of targets, demonitor monitors at random (sometimes
 * twice), and stop, kill or crash targets at random. At the end every
 * target is stopped, the program waits for the DOWNs still due, and
 * checks exact accounting:
 *   - every monitor got exactly one DOWN, or its first gs_demonitor
 *     returned GS_OK and it got none (never both);
 *   - a second gs_demonitor always returns GS_ENOENT, and GS_ENOENT from
 *     the first means the DOWN was (or will be) delivered;
 *   - each DOWN reached the watcher that asked, with len sizeof(gs_down),
 *     pid = the target, and reason = GS_ENOPROC (monitored after its
 *     death) or the target's exit reason (what terminate saw, or
 *     GS_KILLED when terminate did not run);
 *   - every target's terminate ran at most once.
 * Meanwhile NRECLAIMERS threads work on NHUBS targets that live until the
 * end (hubs): each round starts a short-lived server, has it monitor a
 * hub, and ends it (stop, kill, or a crash it is told to have) while the
 * hubs take in monitors from the other threads, so the hubs reclaim dead
 * watchers' records (monitors.c) while gs_demonitor of those monitors
 * runs from the reclaimer threads: before the watcher's end it must say
 * GS_OK (a live watcher's monitor is never reclaimed), after it GS_OK or
 * GS_ENOENT, and a second call GS_ENOENT. The reclaimers also monitor the
 * hubs from the long-lived watchers, which the accounting above covers.
 * At the very end no monitor record may be left in use
 * (gs_runtime_stats.monitors).
 * The registry is left out (liburcu is invisible to TSan; names are in
 * the Criterion tests). `stress_monitors --no-kill` leaves out gs_kill.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "stress_common.h"

enum {
    NWATCHERS = 6,
    NDRIVERS = 4,
    ROUNDS = 5000,          /* per driver */
    NHUBS = 2,
    NRECLAIMERS = 2,
    RROUNDS = 2500,         /* per reclaimer */
    MAXT = NDRIVERS * ROUNDS + NHUBS, /* targets */
    MAXMON = MAXT * 6 + NRECLAIMERS * RROUNDS, /* monitors, all drivers and reclaimers */
    DOWN_CAP = MAXMON,      /* per watcher (generous) */
    TIMEOUT_MS = 20000,
};

enum { T_CRASH = 1, T_STOP_RET = 2, T_PING = 3, T_LINK = 4, T_UNLINK = 5, T_TRAP = 6 };
#define CRASH_CODE GS_EAGAIN
#define STOP_REASON 42
#define NOT_RUN 12345

/* ---- targets ---------------------------------------------------------- */

static gs_pid g_tpid[MAXT];             /* written by the starting driver before any use by others */
static atomic_int g_term_runs[MAXT];
static atomic_int g_term_reason[MAXT];
static atomic_int g_ntargets;

typedef struct {
    int idx;
} tstate;

static int t_init(gs_ctx *ctx, void *state, const void *arg)
{
    tstate *s = state;
    s->idx = *(const int *)arg;
    (void)ctx;
    return GS_OK;
}

static int t_cast(gs_ctx *ctx, void *state, const gs_msg *msg)
{
    (void)ctx;
    (void)state;
    if (msg->tag == T_CRASH)
        return CRASH_CODE;
    if (msg->tag == T_STOP_RET)
        return GS_STOP;
    return GS_OK;
}

static int t_call(gs_ctx *ctx, void *state, const gs_msg *msg, gs_from from)
{
    (void)state;
    int rc = GS_OK;
    gs_pid other = GS_NOPID;
    if (msg->len == sizeof other)
        memcpy(&other, msg->data, sizeof other);
    if (msg->tag == T_LINK) {
        rc = gs_link(ctx, other);
        CHECKF(rc == GS_OK || rc == GS_ENOPROC, "gs_link: %d", rc);
    } else if (msg->tag == T_UNLINK) {
        rc = gs_unlink(ctx, other);
        CHECK_RC(rc, GS_OK);
    } else if (msg->tag == T_TRAP) {
        gs_trap_exits(ctx, 1);
    }
    CHECK_RC(gs_reply(gs_ctx_runtime(ctx), from, &rc, sizeof rc), GS_OK);
    return GS_OK;
}

static int t_info(gs_ctx *ctx, void *state, const gs_msg *msg)
{
    (void)ctx;
    (void)state;
    /* A trapping target: EXIT messages only. */
    CHECKF(msg->tag == GS_TAG_EXIT, "target got info tag %x", (unsigned)msg->tag);
    CHECK(msg->len == sizeof(gs_exit_signal));
    return GS_OK;
}

static void t_terminate(gs_ctx *ctx, void *state, int reason)
{
    (void)ctx;
    tstate *s = state;
    int before = atomic_fetch_add(&g_term_runs[s->idx], 1);
    CHECKF(before == 0, "target %d: terminate ran twice", s->idx);
    atomic_store(&g_term_reason[s->idx], reason);
}

static const gs_server_ops target_ops = {
    .name = "stress-target",
    .state_size = sizeof(tstate),
    .init = t_init,
    .handle_cast = t_cast,
    .handle_call = t_call,
    .handle_info = t_info,
    .terminate = t_terminate,
};

/* ---- watchers --------------------------------------------------------- */

typedef struct down_rec {
    gs_ref ref;
    gs_pid pid;
    int reason;
} down_rec;

static down_rec *g_downs[NWATCHERS]; /* each written only by its watcher */
static int g_ndowns[NWATCHERS];      /* read by main after the runtime stopped */
static atomic_long g_total_downs;
static gs_pid g_watcher[NWATCHERS];

typedef struct {
    int idx;
} wstate;

static int w_init(gs_ctx *ctx, void *state, const void *arg)
{
    (void)ctx;
    ((wstate *)state)->idx = *(const int *)arg;
    return GS_OK;
}

static int w_info(gs_ctx *ctx, void *state, const gs_msg *msg)
{
    (void)ctx;
    wstate *s = state;
    CHECKF(msg->tag == GS_TAG_DOWN, "watcher got info tag %x", (unsigned)msg->tag);
    CHECKF(msg->len == sizeof(gs_down), "DOWN len %zu", msg->len);
    gs_down d;
    memcpy(&d, msg->data, sizeof d);
    CHECK(g_ndowns[s->idx] < DOWN_CAP);
    g_downs[s->idx][g_ndowns[s->idx]++] = (down_rec){d.ref, d.pid, d.reason};
    atomic_fetch_add(&g_total_downs, 1);
    return GS_OK;
}

static const gs_server_ops watcher_ops = {
    .name = "stress-watcher",
    .state_size = sizeof(wstate),
    .init = w_init,
    .handle_info = w_info,
};

/* ---- short-lived watchers (reclaimers) ------------------------------------- */

static int e_cast(gs_ctx *ctx, void *state, const gs_msg *msg)
{
    (void)ctx;
    (void)state;
    return msg->tag == T_CRASH ? CRASH_CODE : GS_OK;
}

static int e_info(gs_ctx *ctx, void *state, const gs_msg *msg)
{
    (void)ctx;
    (void)state;
    /* A hub's DOWN can only come at the end, to one still crashing. */
    CHECKF(msg->tag == GS_TAG_DOWN, "short-lived watcher got info tag %x", (unsigned)msg->tag);
    return GS_OK;
}

static const gs_server_ops ephemeral_ops = {
    .name = "stress-ephemeral",
    .handle_cast = e_cast,
    .handle_info = e_info,
};

/* ---- monitors ----------------------------------------------------------- */

typedef struct mon_rec {
    gs_ref ref;
    int target;
    int watcher;
    int demon_rc;  /* NOT_RUN, GS_OK or GS_ENOENT: the first gs_demonitor */
    int downs;     /* filled in by main at the end */
    bool after_death; /* monitored once the target was known dead */
} mon_rec;

static mon_rec g_mon[MAXMON];
static atomic_int g_nmon;

static gs_runtime *g_rt;
static bool g_no_kill;
static atomic_long g_stats[8]; /* stops, kills, crashes, stop-returns, links, unlinks, demon ok, demon enoent */
static int g_hub[NHUBS];       /* target indexes of the hubs */
static atomic_long g_rstats[3]; /* short-lived watchers' monitors demonitored after their end: ok, enoent;
                                   hub monitors from the long-lived watchers */

/* gs_demonitor of a monitor whose watcher has ended (or is ending). */
static void demonitor_dead(gs_ref ref)
{
    int rc = gs_demonitor(g_rt, ref);
    CHECK_RC2(rc, GS_OK, GS_ENOENT);
    atomic_fetch_add(&g_rstats[rc == GS_OK ? 0 : 1], 1);
    CHECK_RC(gs_demonitor(g_rt, ref), GS_ENOENT);
}

enum { PENDING = 64 };

/* Short-lived servers monitor the hubs and end; see the top. */
static void *reclaimer(void *arg)
{
    int id = (int)(intptr_t)arg;
    uint64_t rng = stress_seed((uint64_t)id + 200);
    /* Monitors of ended watchers, demonitored some rounds later, when the
     * hub may be reclaiming them. */
    gs_ref pending[PENDING];
    int npending = 0;
    for (int round = 0; round < RROUNDS; round++) {
        int hub = g_hub[stress_rand(&rng) % NHUBS];
        gs_pid e;
        CHECK_RC(gs_start(g_rt, &ephemeral_ops, NULL, &e), GS_OK);
        gs_ref ref = 0;
        CHECK_RC(gs_monitor(g_rt, e, g_tpid[hub], &ref), GS_OK);
        unsigned what = (unsigned)(stress_rand(&rng) % 8);
        if (what == 0) {
            /* Demonitored while its watcher lives: never reclaimed first. */
            CHECK_RC(gs_demonitor(g_rt, ref), GS_OK);
            CHECK_RC(gs_demonitor(g_rt, ref), GS_ENOENT);
        }
        switch (stress_rand(&rng) % 3) {
        case 0:
            CHECK_RC(gs_stop(g_rt, e, GS_NORMAL, TIMEOUT_MS), GS_OK);
            break;
        case 1:
            if (!g_no_kill) {
                CHECK_RC(gs_kill(g_rt, e), GS_OK);
                break;
            }
            /* fall through */
        default:
            CHECK_RC(gs_cast(g_rt, e, T_CRASH, NULL, 0), GS_OK); /* ends a little later */
            break;
        }
        if (what == 1) {
            /* Right after its end (or during). */
            demonitor_dead(ref);
        } else if (what == 2 || what == 3) {
            /* Later: the hub may have reclaimed it, or be doing so now. */
            if (npending == PENDING) {
                int k = (int)(stress_rand(&rng) % PENDING);
                demonitor_dead(pending[k]);
                pending[k] = pending[--npending];
            }
            pending[npending++] = ref;
        }
        if (npending > 0 && stress_rand(&rng) % 4 == 0) {
            int k = (int)(stress_rand(&rng) % (uint64_t)npending);
            demonitor_dead(pending[k]);
            pending[k] = pending[--npending];
        }
        /* Now and then a long-lived watcher monitors a hub (one DOWN due
         * at the end unless demonitored); these keep the hubs taking in
         * monitors, and so reclaiming, while short-lived ones die. */
        if (stress_rand(&rng) % 4 == 0) {
            int m = atomic_fetch_add(&g_nmon, 1);
            CHECK(m < MAXMON);
            int w = (int)(stress_rand(&rng) % NWATCHERS);
            gs_ref lref = 0;
            CHECK_RC(gs_monitor(g_rt, g_watcher[w], g_tpid[hub], &lref), GS_OK);
            g_mon[m] = (mon_rec){.ref = lref, .target = hub, .watcher = w, .demon_rc = NOT_RUN};
            atomic_fetch_add(&g_rstats[2], 1);
            if (stress_rand(&rng) % 4 == 0) {
                int rc = gs_demonitor(g_rt, lref);
                CHECK_RC(rc, GS_OK); /* its watcher lives: still there */
                g_mon[m].demon_rc = rc;
            }
        }
    }
    while (npending > 0)
        demonitor_dead(pending[--npending]);
    return NULL;
}

static void *driver(void *arg)
{
    int id = (int)(intptr_t)arg;
    uint64_t rng = stress_seed((uint64_t)id + 100);
    int mine[ROUNDS]; /* target indexes started by this driver */
    bool gone[ROUNDS];
    int nmine = 0;
    int mymon[ROUNDS * 6];
    int nmymon = 0;
    for (int round = 0; round < ROUNDS; round++) {
        int t = atomic_fetch_add(&g_ntargets, 1);
        CHECK(t < MAXT);
        atomic_store(&g_term_reason[t], NOT_RUN);
        gs_pid pid;
        CHECK_RC(gs_start(g_rt, &target_ops, &t, &pid), GS_OK);
        g_tpid[t] = pid;
        mine[nmine] = t;
        gone[nmine] = false;
        nmine++;
        if (stress_rand(&rng) % 4 == 0) {
            int rc = 0;
            CHECK_RC(gs_call(g_rt, pid, T_TRAP, NULL, 0, &rc, sizeof rc, NULL, TIMEOUT_MS), GS_OK);
        }
        /* 1-4 monitors on the new target. */
        int nm = 1 + (int)(stress_rand(&rng) % 4);
        for (int k = 0; k < nm; k++) {
            int m = atomic_fetch_add(&g_nmon, 1);
            CHECK(m < MAXMON);
            int w = (int)(stress_rand(&rng) % NWATCHERS);
            gs_ref ref = 0;
            CHECK_RC(gs_monitor(g_rt, g_watcher[w], pid, &ref), GS_OK);
            CHECK(ref != 0);
            g_mon[m] = (mon_rec){.ref = ref, .target = t, .watcher = w, .demon_rc = NOT_RUN};
            mymon[nmymon++] = m;
        }
        /* Link with an older target of ours, sometimes unlink again. */
        if (nmine > 1 && stress_rand(&rng) % 2 == 0) {
            int o = mine[stress_rand(&rng) % (uint64_t)(nmine - 1)];
            gs_pid other = g_tpid[o];
            int rc = 0;
            int crc = gs_call(g_rt, pid, T_LINK, &other, sizeof other, &rc, sizeof rc, NULL, TIMEOUT_MS);
            CHECK_RC2(crc, GS_OK, GS_ENOPROC); /* ENOPROC: killed by an earlier link */
            atomic_fetch_add(&g_stats[4], 1);
            if (crc == GS_OK && stress_rand(&rng) % 3 == 0) {
                crc = gs_call(g_rt, pid, T_UNLINK, &other, sizeof other, &rc, sizeof rc, NULL, TIMEOUT_MS);
                CHECK_RC2(crc, GS_OK, GS_ENOPROC);
                atomic_fetch_add(&g_stats[5], 1);
            }
        }
        /* End an older target of ours. */
        if (stress_rand(&rng) % 3 != 0) {
            int j = (int)(stress_rand(&rng) % (uint64_t)nmine);
            if (!gone[j]) {
                gone[j] = true;
                gs_pid victim = g_tpid[mine[j]];
                int rc;
                switch (stress_rand(&rng) % 4) {
                case 0:
                    rc = gs_stop(g_rt, victim, stress_rand(&rng) % 2 ? GS_NORMAL : STOP_REASON, TIMEOUT_MS);
                    CHECK_RC2(rc, GS_OK, GS_ENOPROC);
                    atomic_fetch_add(&g_stats[0], 1);
                    break;
                case 1:
                    if (!g_no_kill) {
                        rc = gs_kill(g_rt, victim);
                        CHECK_RC2(rc, GS_OK, GS_ENOPROC);
                        atomic_fetch_add(&g_stats[1], 1);
                        break;
                    }
                    /* fall through */
                case 2:
                    rc = gs_cast(g_rt, victim, T_CRASH, NULL, 0);
                    CHECK_RC2(rc, GS_OK, GS_ENOPROC);
                    atomic_fetch_add(&g_stats[2], 1);
                    break;
                default:
                    rc = gs_cast(g_rt, victim, T_STOP_RET, NULL, 0);
                    CHECK_RC2(rc, GS_OK, GS_ENOPROC);
                    atomic_fetch_add(&g_stats[3], 1);
                    break;
                }
                /* Sometimes monitor it right after (dead or dying). */
                if (stress_rand(&rng) % 3 == 0) {
                    int m = atomic_fetch_add(&g_nmon, 1);
                    CHECK(m < MAXMON);
                    int w = (int)(stress_rand(&rng) % NWATCHERS);
                    gs_ref ref = 0;
                    CHECK_RC(gs_monitor(g_rt, g_watcher[w], victim, &ref), GS_OK);
                    g_mon[m] = (mon_rec){.ref = ref, .target = mine[j], .watcher = w, .demon_rc = NOT_RUN,
                                         .after_death = true};
                    mymon[nmymon++] = m;
                }
            }
        }
        /* Demonitor one of our monitors at random (maybe twice). */
        if (nmymon > 0 && stress_rand(&rng) % 2 == 0) {
            int m = mymon[stress_rand(&rng) % (uint64_t)nmymon];
            int rc = gs_demonitor(g_rt, g_mon[m].ref);
            if (g_mon[m].demon_rc == NOT_RUN) {
                CHECK_RC2(rc, GS_OK, GS_ENOENT);
                g_mon[m].demon_rc = rc;
                atomic_fetch_add(&g_stats[rc == GS_OK ? 6 : 7], 1);
            } else {
                CHECKF(rc == GS_ENOENT, "second gs_demonitor of a ref: %d", rc);
            }
        }
        if (stress_rand(&rng) % 8 == 0)
            stress_sleep_us((long)(stress_rand(&rng) % 200));
    }
    return NULL;
}

static int cmp_down(const void *a, const void *b)
{
    const down_rec *x = a, *y = b;
    return x->ref < y->ref ? -1 : x->ref > y->ref;
}

int main(int argc, char **argv)
{
    g_no_kill = argc > 1 && strcmp(argv[1], "--no-kill") == 0;
    stress_watchdog(280);
    gs_runtime_opts opts = {.workers = 3};
    CHECK_RC(gs_runtime_start(&g_rt, &opts), GS_OK);
    static int widx[NWATCHERS];
    for (int i = 0; i < NWATCHERS; i++) {
        g_downs[i] = calloc(DOWN_CAP, sizeof(down_rec));
        CHECK(g_downs[i] != NULL);
        widx[i] = i;
        CHECK_RC(gs_start(g_rt, &watcher_ops, &widx[i], &g_watcher[i]), GS_OK);
    }
    for (int h = 0; h < NHUBS; h++) {
        int t = atomic_fetch_add(&g_ntargets, 1);
        atomic_store(&g_term_reason[t], NOT_RUN);
        CHECK_RC(gs_start(g_rt, &target_ops, &t, &g_tpid[t]), GS_OK);
        g_hub[h] = t;
    }
    double t0 = stress_now_s();
    pthread_t th[NDRIVERS + NRECLAIMERS];
    for (int i = 0; i < NDRIVERS; i++)
        CHECK(pthread_create(&th[i], NULL, driver, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < NRECLAIMERS; i++)
        CHECK(pthread_create(&th[NDRIVERS + i], NULL, reclaimer, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < NDRIVERS + NRECLAIMERS; i++)
        CHECK(pthread_join(th[i], NULL) == 0);

    /* Stop every target still alive; then every monitor not removed by a
     * successful gs_demonitor owes exactly one DOWN. */
    int nt = atomic_load(&g_ntargets);
    for (int t = 0; t < nt; t++) {
        int rc = gs_stop(g_rt, g_tpid[t], GS_NORMAL, TIMEOUT_MS);
        CHECK_RC2(rc, GS_OK, GS_ENOPROC);
    }
    int nmon = atomic_load(&g_nmon);
    long expect = 0;
    for (int m = 0; m < nmon; m++)
        expect += g_mon[m].demon_rc != GS_OK;
    double deadline = stress_now_s() + 10;
    while (atomic_load(&g_total_downs) < expect && stress_now_s() < deadline)
        stress_sleep_us(2000);
    stress_sleep_us(100000); /* and no more */
    long got = atomic_load(&g_total_downs);
    /* Every record freed: taken DOWNs, demonitors, exits and reclaiming. */
    gs_runtime_stats st;
    deadline = stress_now_s() + 10;
    for (;;) {
        CHECK_RC(gs_runtime_stats_get(g_rt, &st), GS_OK);
        if (st.monitors == 0 || stress_now_s() >= deadline)
            break;
        stress_sleep_us(2000);
    }
    CHECKF(st.monitors == 0, "%llu monitor records still in use", (unsigned long long)st.monitors);
    CHECK_RC(gs_runtime_stop(g_rt), GS_OK);
    double t1 = stress_now_s();

    /* Match DOWNs to monitors by ref. */
    long ndown = 0;
    for (int w = 0; w < NWATCHERS; w++)
        ndown += g_ndowns[w];
    down_rec *all = calloc((size_t)ndown + 1, sizeof *all);
    CHECK(all != NULL);
    long k = 0;
    for (int w = 0; w < NWATCHERS; w++)
        for (int i = 0; i < g_ndowns[w]; i++)
            all[k++] = g_downs[w][i];
    qsort(all, (size_t)ndown, sizeof *all, cmp_down);
    for (long i = 1; i < ndown; i++)
        CHECKF(all[i].ref != all[i - 1].ref, "ref %llx: two DOWNs", (unsigned long long)all[i].ref);
    long lost = 0, both = 0, wrong = 0;
    for (int m = 0; m < nmon; m++) {
        mon_rec *r = &g_mon[m];
        down_rec key = {.ref = r->ref};
        down_rec *d = bsearch(&key, all, (size_t)ndown, sizeof *all, cmp_down);
        if (r->demon_rc == GS_OK) {
            if (d != NULL) {
                both++;
                fprintf(stderr, "monitor %d (ref %llx): demonitor returned GS_OK and a DOWN came too\n", m,
                        (unsigned long long)r->ref);
            }
            continue;
        }
        if (d == NULL) {
            if (lost < 10)
                fprintf(stderr,
                        "monitor %d (ref %llx, target %d, %s, demonitor %d, terminate %s reason %d): no DOWN\n",
                        m, (unsigned long long)r->ref, r->target, r->after_death ? "after death" : "live",
                        r->demon_rc, atomic_load(&g_term_runs[r->target]) ? "ran" : "did not run",
                        atomic_load(&g_term_reason[r->target]));
            lost++;
            continue;
        }
        CHECK(d->pid == g_tpid[r->target]);
        bool ran = atomic_load(&g_term_runs[r->target]) == 1;
        int exit_reason = ran ? atomic_load(&g_term_reason[r->target]) : GS_KILLED;
        if (d->reason != exit_reason && !(d->reason == GS_ENOPROC && r->after_death)) {
            if (wrong < 10)
                fprintf(stderr, "monitor %d: DOWN reason %d, target exit reason %d (terminate %s)\n", m,
                        d->reason, exit_reason, ran ? "ran" : "did not run");
            wrong++;
        }
    }
    {
        /* Each DOWN went to the watcher that asked: sort the monitors'
         * (ref, watcher) pairs and look every DOWN up. */
        down_rec *mw = calloc((size_t)nmon + 1, sizeof *mw);
        CHECK(mw != NULL);
        for (int m = 0; m < nmon; m++)
            mw[m] = (down_rec){g_mon[m].ref, 0, g_mon[m].watcher};
        qsort(mw, (size_t)nmon, sizeof *mw, cmp_down);
        for (int w = 0; w < NWATCHERS; w++)
            for (int i = 0; i < g_ndowns[w]; i++) {
                down_rec key = {.ref = g_downs[w][i].ref};
                down_rec *x = bsearch(&key, mw, (size_t)nmon, sizeof *mw, cmp_down);
                CHECKF(x != NULL, "a DOWN with a ref no gs_monitor returned");
                CHECKF(x->reason == w, "a DOWN reached watcher %d instead of %d", w, x->reason);
            }
        free(mw);
    }
    for (int t = 0; t < nt; t++)
        CHECK(atomic_load(&g_term_runs[t]) <= 1);

    printf("stress_monitors%s: %d targets, %d monitors, %ld DOWNs (expected %ld, counted %ld); "
           "stops %ld, kills %ld, crashes %ld, stop-returns %ld, links %ld, unlinks %ld, "
           "demonitor ok %ld / enoent %ld; hub monitors %ld, short-lived watchers' demonitored after "
           "their end ok %ld / enoent %ld; lost %ld, both %ld, wrong reason %ld; %.2f s\n",
           g_no_kill ? " (no kill)" : "", nt, nmon, ndown, expect, got, atomic_load(&g_stats[0]),
           atomic_load(&g_stats[1]), atomic_load(&g_stats[2]), atomic_load(&g_stats[3]),
           atomic_load(&g_stats[4]), atomic_load(&g_stats[5]), atomic_load(&g_stats[6]),
           atomic_load(&g_stats[7]), atomic_load(&g_rstats[2]), atomic_load(&g_rstats[0]),
           atomic_load(&g_rstats[1]), lost, both, wrong, t1 - t0);
    CHECKF(lost == 0, "%ld monitors never delivered their DOWN", lost);
    CHECKF(both == 0, "%ld demonitored monitors delivered a DOWN", both);
    CHECKF(wrong == 0, "%ld DOWNs with a wrong reason", wrong);
    CHECK(ndown == expect);
    for (int w = 0; w < NWATCHERS; w++)
        free(g_downs[w]);
    free(all);
    return 0;
}
