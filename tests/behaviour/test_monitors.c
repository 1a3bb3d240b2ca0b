/* test_monitors.c - gs_monitor / gs_demonitor and DOWN messages.
 *
 * A "probe" server does what the test asks (crash, stop, block on a gate
 * the test opens, link, monitor, demonitor) and records every handle_info
 * message and every terminate; the test thread asserts on the records.
 */
#include "common.h"

#include "probe.h"

#include <sched.h>

/* ------------------------------------------------------------------ */
/* DOWN payloads                                                       */
/* ------------------------------------------------------------------ */

/* Checks the single DOWN `watcher` got for `ref` about `target`. */
static void check_one_down(gs_pid watcher, gs_ref ref, gs_pid target, int reason)
{
    cr_assert(wait_ev(watcher, GS_TAG_DOWN, 1, 10000), "no DOWN reached the watcher");
    ev e;
    cr_assert(ev_find(watcher, GS_TAG_DOWN, &e));
    cr_assert_eq(e.tag, GS_TAG_DOWN);
    cr_assert_eq(e.len, sizeof(gs_down), "DOWN len %zu, want %zu", e.len, sizeof(gs_down));
    cr_assert_eq(e.down.ref, ref, "DOWN ref %" PRIx64 ", want %" PRIx64, e.down.ref, ref);
    cr_assert_eq(e.down.pid, target, "DOWN pid %" PRIx64 ", want %" PRIx64, e.down.pid, target);
    cr_assert_eq(e.down.reason, reason, "DOWN reason %d (%s), want %d (%s)", e.down.reason,
                 gs_strerror(e.down.reason), reason, gs_strerror(reason));
    cr_assert(e.sender == GS_NOPID || e.sender == target,
              "DOWN sender %" PRIx64 " is neither GS_NOPID nor the target", e.sender);
    sleep_ms(50);
    cr_assert_eq(ev_count(watcher, GS_TAG_DOWN), 1, "more than one DOWN");
    cr_assert_eq(down_count(ref), 1);
}

static void down_after_gs_stop(unsigned workers)
{
    probe_reset();
    gs_runtime *rt = rt_new(workers);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    gs_ref ref = monitor_ok(rt, w, t);
    stop_ok(rt, t);
    check_one_down(w, ref, t, GS_NORMAL);
    ping_ok(rt, w); /* the watcher lives on */
    cr_assert_eq(term_count(w), 0);
    rt_free(rt);
}

Test(monitors, down_payload_exact_after_gs_stop_1_worker, .timeout = 20) { down_after_gs_stop(1); }
Test(monitors, down_payload_exact_after_gs_stop_2_workers, .timeout = 20) { down_after_gs_stop(2); }

static void down_with_reason(unsigned workers, int how, int reason)
{
    probe_reset();
    gs_runtime *rt = rt_new(workers);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    gs_ref ref = monitor_ok(rt, w, t);
    if (how == 0) {
        cast_int(rt, t, P_CRASH, reason);
    } else if (how == 1) {
        int rc = gs_stop(rt, t, reason, 10000);
        cr_assert_eq(rc, GS_OK, "gs_stop: %d", rc);
    } else {
        cast_int(rt, t, P_STOP_WITH, reason);
    }
    check_one_down(w, ref, t, reason);
    cr_assert(wait_term(t, 5000));
    cr_assert_eq(term_reason(t), reason);
    rt_free(rt);
}

Test(monitors, down_reason_is_crash_code_1_worker, .timeout = 20) { down_with_reason(1, 0, GS_EAGAIN); }
Test(monitors, down_reason_is_crash_code_2_workers, .timeout = 20) { down_with_reason(2, 0, GS_EAGAIN); }
Test(monitors, down_reason_is_user_stop_reason, .timeout = 20) { down_with_reason(2, 1, 42); }
Test(monitors, down_reason_is_shutdown_from_gs_stop, .timeout = 20) { down_with_reason(2, 1, GS_SHUTDOWN); }
Test(monitors, down_reason_is_set_exit_reason, .timeout = 20) { down_with_reason(2, 2, GS_SHUTDOWN); }
Test(monitors, down_reason_is_user_reason_from_stop_return, .timeout = 20) { down_with_reason(1, 2, 77); }

Test(monitors, down_for_normal_stop_return, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    gs_ref ref = monitor_ok(rt, w, t);
    cast_int(rt, t, P_STOP, 0);
    check_one_down(w, ref, t, GS_NORMAL);
    rt_free(rt);
}

/* gs_runtime_stop: both servers stop with GS_SHUTDOWN; the order is not
 * specified, so the watcher may be gone before the DOWN. Whatever DOWN
 * arrives must be exact and come once. */
Test(monitors, runtime_stop_down_if_any_says_shutdown, .timeout = 30)
{
    for (int round = 0; round < 20; round++) {
        probe_reset();
        gs_runtime *rt = rt_new(round % 2 ? 2 : 1);
        gs_pid w = start_ok(rt, &probe_ops, NULL);
        gs_pid t = start_ok(rt, &probe_ops, NULL);
        gs_pid w2 = start_ok(rt, &probe_ops, NULL);
        gs_ref ref = monitor_ok(rt, w, t);
        gs_ref ref2 = monitor_ok(rt, w2, t);
        rt_free(rt);
        cr_assert_eq(term_count(t), 1);
        cr_assert_eq(term_reason(t), GS_SHUTDOWN);
        cr_assert_eq(term_reason(w), GS_SHUTDOWN);
        cr_assert_leq(down_count(ref), 1);
        cr_assert_leq(down_count(ref2), 1);
        pthread_mutex_lock(&g_ev_mu);
        for (int i = 0; i < g_nev; i++) {
            if (g_ev[i].tag != GS_TAG_DOWN)
                continue;
            cr_assert(g_ev[i].down.ref == ref || g_ev[i].down.ref == ref2);
            cr_assert_eq(g_ev[i].self, g_ev[i].down.ref == ref ? w : w2);
            cr_assert_eq(g_ev[i].down.pid, t);
            cr_assert_eq(g_ev[i].down.reason, GS_SHUTDOWN, "round %d: DOWN reason %d at runtime stop",
                         round, g_ev[i].down.reason);
            cr_assert_eq(g_ev[i].len, sizeof(gs_down));
        }
        pthread_mutex_unlock(&g_ev_mu);
    }
}

/* ------------------------------------------------------------------ */
/* Dead targets, dead watchers, bad arguments                          */
/* ------------------------------------------------------------------ */

static void monitor_dead_target(unsigned workers)
{
    probe_reset();
    gs_runtime *rt = rt_new(workers);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    stop_ok(rt, t);
    gs_ref ref = 0;
    int rc = gs_monitor(rt, w, t, &ref);
    cr_assert_eq(rc, GS_OK, "monitoring a dead pid: %d (%s)", rc, gs_strerror(rc));
    cr_assert_neq(ref, 0);
    check_one_down(w, ref, t, GS_ENOPROC);
    /* The DOWN was handled: the monitor is gone. */
    cr_assert_eq(gs_demonitor(rt, ref), GS_ENOENT);
    rt_free(rt);
}

Test(monitors, monitoring_dead_pid_gives_ok_and_immediate_down_1_worker, .timeout = 20) { monitor_dead_target(1); }
Test(monitors, monitoring_dead_pid_gives_ok_and_immediate_down_2_workers, .timeout = 20) { monitor_dead_target(2); }

Test(monitors, monitoring_made_up_pid_gives_down_enoproc, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid fake = (gs_pid)0x00ABCDEF00123457ull;
    gs_ref ref = monitor_ok(rt, w, fake);
    check_one_down(w, ref, fake, GS_ENOPROC);
    rt_free(rt);
}

Test(monitors, monitor_from_a_callback, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    int64_t st = 12345, ref = 0;
    cr_assert_eq(pcall(rt, w, K_MONITOR, t, &st, &ref), GS_OK);
    cr_assert_eq(st, GS_OK, "gs_monitor from a callback: %d", (int)st);
    cr_assert_neq(ref, 0);
    cast_int(rt, t, P_CRASH, GS_EBADRETURN);
    check_one_down(w, (gs_ref)ref, t, GS_EBADRETURN);
    rt_free(rt);
}

Test(monitors, watcher_not_alive_gives_enoproc, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    stop_ok(rt, w);
    gs_ref ref = 777;
    cr_assert_eq(gs_monitor(rt, w, t, &ref), GS_ENOPROC);
    cr_assert_eq(gs_monitor(rt, GS_NOPID, t, &ref), GS_ENOPROC);
    cr_assert_eq(gs_monitor(rt, (gs_pid)0x00ABCDEF00123457ull, t, &ref), GS_ENOPROC);
    /* Bad arguments. */
    gs_pid w2 = start_ok(rt, &probe_ops, NULL);
    cr_assert_eq(gs_monitor(NULL, w2, t, &ref), GS_EINVAL);
    cr_assert_eq(gs_monitor(rt, w2, GS_NOPID, &ref), GS_EINVAL);
    cr_assert_eq(gs_demonitor(NULL, 1), GS_EINVAL);
    /* Nothing was set up: stopping the target notifies nobody. */
    stop_ok(rt, t);
    sleep_ms(50);
    ping_ok(rt, w2);
    cr_assert_eq(ev_count(GS_NOPID, GS_TAG_DOWN), 0);
    rt_free(rt);
}

Test(monitors, out_may_be_null, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    /* The header does not say out may be NULL for gs_monitor; if it is
     * accepted, DOWN must still come. */
    int rc = gs_monitor(rt, w, t, NULL);
    cr_assert(rc == GS_OK || rc == GS_EINVAL, "%d", rc);
    stop_ok(rt, t);
    if (rc == GS_OK)
        cr_assert(wait_ev(w, GS_TAG_DOWN, 1, 5000));
    rt_free(rt);
}

/* ------------------------------------------------------------------ */
/* gs_demonitor                                                         */
/* ------------------------------------------------------------------ */

static void demonitor_before_exit(unsigned workers)
{
    probe_reset();
    gs_runtime *rt = rt_new(workers);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid ctl = start_ok(rt, &probe_ops, NULL); /* a control watcher */
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    gs_ref ref = monitor_ok(rt, w, t);
    gs_ref ref_ctl = monitor_ok(rt, ctl, t);
    cr_assert_neq(ref, ref_ctl);
    cr_assert_eq(gs_demonitor(rt, ref), GS_OK);
    cr_assert_eq(gs_demonitor(rt, ref), GS_ENOENT, "demonitor twice");
    cast_int(rt, t, P_CRASH, GS_EAGAIN);
    check_one_down(ctl, ref_ctl, t, GS_EAGAIN);
    sleep_ms(50);
    ping_ok(rt, w);
    cr_assert_eq(ev_count(w, GS_TAG_DOWN), 0, "DOWN of a demonitored ref");
    cr_assert_eq(down_count(ref), 0);
    cr_assert_eq(gs_demonitor(rt, ref), GS_ENOENT);
    rt_free(rt);
}

Test(monitors, demonitor_before_exit_no_down_1_worker, .timeout = 20) { demonitor_before_exit(1); }
Test(monitors, demonitor_before_exit_no_down_2_workers, .timeout = 20) { demonitor_before_exit(2); }

/* The target exits while the watcher is busy: the DOWN is queued (or on
 * its way); gs_demonitor must drop it. Needs a worker besides the busy
 * watcher's, so 2 and 4 workers. */
static void demonitor_queued_down(unsigned workers, int how)
{
    probe_reset();
    gs_runtime *rt = rt_new(workers);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid ctl = start_ok(rt, &probe_ops, NULL);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    gs_ref ref = monitor_ok(rt, w, t);
    gs_ref ref_ctl = monitor_ok(rt, ctl, t);
    block_server(rt, w);
    if (how == 0) {
        stop_ok(rt, t);
    } else if (how == 1) {
        cast_int(rt, t, P_CRASH, GS_EAGAIN);
    } else {
        cr_assert_eq(gs_kill(rt, t), GS_OK);
    }
    /* The target has exited once the control watcher has its DOWN; the
     * busy watcher has not handled anything. */
    cr_assert(wait_ev(ctl, GS_TAG_DOWN, 1, 10000));
    cr_assert_eq(atomic_load(&g_unblocked), 0);
    int rc = gs_demonitor(rt, ref);
    int rc2 = gs_demonitor(rt, ref);
    gate_open();
    cr_assert(wait_int_eq(&g_unblocked, 1, 10000));
    ping_ok(rt, w);
    sleep_ms(50);
    ping_ok(rt, w);
    cr_assert_eq(rc, GS_OK, "demonitor of a fired, unhandled monitor: %d (%s)", rc, gs_strerror(rc));
    cr_assert_eq(rc2, GS_ENOENT, "second demonitor: %d", rc2);
    cr_assert_eq(ev_count(w, GS_TAG_DOWN), 0, "a DOWN of a demonitored ref reached handle_info");
    cr_assert_eq(down_count(ref_ctl), 1);
    rt_free(rt);
}

Test(monitors, demonitor_drops_queued_down_stop_2_workers, .timeout = 30) { demonitor_queued_down(2, 0); }
Test(monitors, demonitor_drops_queued_down_stop_4_workers, .timeout = 30) { demonitor_queued_down(4, 0); }
Test(monitors, demonitor_drops_queued_down_crash_2_workers, .timeout = 30) { demonitor_queued_down(2, 1); }
Test(monitors, demonitor_drops_queued_down_kill_2_workers, .timeout = 30) { demonitor_queued_down(2, 2); }

/* The watcher itself demonitors from a callback while the DOWN sits in
 * its own mailbox behind that callback (the OTP "demonitor + flush"). */
Test(monitors, demonitor_from_watcher_callback_drops_its_queued_down, .timeout = 30)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid ctl = start_ok(rt, &probe_ops, NULL);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    gs_ref ref = monitor_ok(rt, w, t);
    monitor_ok(rt, ctl, t);
    block_server(rt, w);
    cr_assert_eq(gs_cast(rt, w, P_DEMON, &ref, sizeof ref), GS_OK); /* queued before the DOWN */
    stop_ok(rt, t);
    cr_assert(wait_ev(ctl, GS_TAG_DOWN, 1, 10000));
    gate_open();
    cr_assert(wait_int_eq(&g_demon_done, 1, 10000));
    ping_ok(rt, w);
    sleep_ms(50);
    ping_ok(rt, w);
    cr_assert_eq(atomic_load(&g_demon_rc), GS_OK);
    cr_assert_eq(ev_count(w, GS_TAG_DOWN), 0);
    rt_free(rt);
}

/* Once handled, the monitor is gone: demonitor gives GS_ENOENT. */
Test(monitors, demonitor_after_down_handled_is_enoent, .timeout = 30)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    gs_ref ref = monitor_ok(rt, w, t);
    stop_ok(rt, t);
    check_one_down(w, ref, t, GS_NORMAL);
    cr_assert_eq(gs_demonitor(rt, ref), GS_ENOENT);
    /* From the watcher itself too. */
    cr_assert_eq(gs_cast(rt, w, P_DEMON, &ref, sizeof ref), GS_OK);
    cr_assert(wait_int_eq(&g_demon_done, 1, 10000));
    cr_assert_eq(atomic_load(&g_demon_rc), GS_ENOENT);
    rt_free(rt);
}

Test(monitors, demonitor_of_unknown_refs_is_enoent, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    cr_assert_eq(gs_demonitor(rt, 0), GS_ENOENT);
    cr_assert_eq(gs_demonitor(rt, 0x0123456789ABCDEFull), GS_ENOENT);
    cr_assert_eq(gs_demonitor(rt, ~(gs_ref)0), GS_ENOENT);
    cr_assert_eq(gs_demonitor(rt, (gs_ref)w), GS_ENOENT, "a pid is not a monitor");
    gs_ref ref = monitor_ok(rt, w, t);
    /* Neighbours of a real ref are not refs. */
    cr_assert_eq(gs_demonitor(rt, ref + 1), GS_ENOENT);
    cr_assert_eq(gs_demonitor(rt, ref ^ ((gs_ref)1 << 40)), GS_ENOENT);
    cr_assert_eq(gs_demonitor(rt, ref ^ ((gs_ref)1 << 63)), GS_ENOENT);
    /* ...and the real one still works. */
    cr_assert_eq(gs_demonitor(rt, ref), GS_OK);
    stop_ok(rt, t);
    sleep_ms(50);
    ping_ok(rt, w);
    cr_assert_eq(ev_count(w, GS_TAG_DOWN), 0);
    rt_free(rt);
}

/* A ref of a demonitored monitor must not come back to life when its
 * record is reused by a new monitor. */
Test(monitors, stale_ref_does_not_remove_a_newer_monitor, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    gs_ref old[64];
    for (int i = 0; i < 64; i++) {
        old[i] = monitor_ok(rt, w, t);
        cr_assert_eq(gs_demonitor(rt, old[i]), GS_OK);
    }
    gs_ref fresh[64];
    for (int i = 0; i < 64; i++)
        fresh[i] = monitor_ok(rt, w, t);
    for (int i = 0; i < 64; i++) {
        for (int k = 0; k < 64; k++)
            cr_assert_neq(old[i], fresh[k], "a ref was reused");
        cr_assert_eq(gs_demonitor(rt, old[i]), GS_ENOENT);
    }
    stop_ok(rt, t);
    cr_assert(wait_ev(w, GS_TAG_DOWN, 64, 10000));
    sleep_ms(50);
    for (int i = 0; i < 64; i++)
        cr_assert_eq(down_count(fresh[i]), 1);
    cr_assert_eq(ev_count(w, GS_TAG_DOWN), 64);
    rt_free(rt);
}

/* ------------------------------------------------------------------ */
/* Many monitors                                                        */
/* ------------------------------------------------------------------ */

#define NMON 10000
#define NWATCHERS 16

static gs_ref g_refs[NMON];

static int cmp_ref(const void *a, const void *b)
{
    gs_ref x = *(const gs_ref *)a, y = *(const gs_ref *)b;
    return x < y ? -1 : x > y;
}

typedef struct mon_job {
    gs_runtime *rt;
    gs_pid target;
    const gs_pid *watchers;
    int from, to;
    atomic_int *fails;
} mon_job;

static void *monitor_thread(void *p)
{
    mon_job *j = p;
    for (int i = j->from; i < j->to; i++) {
        gs_ref r = 0;
        if (gs_monitor(j->rt, j->watchers[i % NWATCHERS], j->target, &r) != GS_OK || r == 0)
            atomic_fetch_add(j->fails, 1);
        g_refs[i] = r;
    }
    return NULL;
}

static void ten_thousand_monitors(unsigned workers)
{
    probe_reset();
    gs_runtime *rt = rt_new(workers);
    gs_pid watchers[NWATCHERS];
    for (int i = 0; i < NWATCHERS; i++)
        watchers[i] = start_ok(rt, &probe_ops, NULL);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    atomic_int fails = 0;
    pthread_t th[4];
    mon_job jobs[4];
    for (int k = 0; k < 4; k++) {
        jobs[k] = (mon_job){rt, t, watchers, k * NMON / 4, (k + 1) * NMON / 4, &fails};
        cr_assert_eq(pthread_create(&th[k], NULL, monitor_thread, &jobs[k]), 0);
    }
    for (int k = 0; k < 4; k++)
        pthread_join(th[k], NULL);
    cr_assert_eq(atomic_load(&fails), 0, "%d gs_monitor calls failed", atomic_load(&fails));
    /* Every ref distinct. */
    static gs_ref sorted[NMON];
    memcpy(sorted, g_refs, sizeof sorted);
    qsort(sorted, NMON, sizeof sorted[0], cmp_ref);
    for (int i = 1; i < NMON; i++)
        cr_assert_neq(sorted[i - 1], sorted[i], "two monitors got the same ref");
    ping_ok(rt, t); /* the target has taken note of them (not required) */
    int64_t t0 = now_ms();
    int rc = gs_stop(rt, t, 42, 30000);
    cr_assert_eq(rc, GS_OK, "gs_stop of a server with %d monitors: %d", NMON, rc);
    cr_assert(wait_ev(GS_NOPID, GS_TAG_DOWN, NMON, 30000), "only %d of %d DOWNs arrived",
              ev_count(GS_NOPID, GS_TAG_DOWN), NMON);
    int64_t took = now_ms() - t0;
    sleep_ms(100);
    for (int i = 0; i < NWATCHERS; i++)
        ping_ok(rt, watchers[i]);
    cr_assert_eq(ev_count(GS_NOPID, GS_TAG_DOWN), NMON, "extra DOWNs");
    cr_assert_eq(atomic_load(&g_ev_overflow), 0);
    /* Exactly once per ref, each to its own watcher, exact payload. */
    static gs_ref got[NMON];
    pthread_mutex_lock(&g_ev_mu);
    int n = 0;
    for (int i = 0; i < g_nev; i++) {
        if (g_ev[i].tag != GS_TAG_DOWN)
            continue;
        cr_assert_eq(g_ev[i].len, sizeof(gs_down));
        cr_assert_eq(g_ev[i].down.pid, t);
        cr_assert_eq(g_ev[i].down.reason, 42);
        got[n++] = g_ev[i].down.ref;
    }
    pthread_mutex_unlock(&g_ev_mu);
    cr_assert_eq(n, NMON);
    qsort(got, NMON, sizeof got[0], cmp_ref);
    for (int i = 0; i < NMON; i++)
        cr_assert_eq(got[i], sorted[i], "DOWN refs differ from the monitors' refs at %d", i);
    /* The right watcher. */
    pthread_mutex_lock(&g_ev_mu);
    for (int i = 0; i < g_nev; i++) {
        if (g_ev[i].tag != GS_TAG_DOWN)
            continue;
        int at = -1;
        for (int k = 0; k < NMON; k++)
            if (g_refs[k] == g_ev[i].down.ref) {
                at = k;
                break;
            }
        cr_assert(at >= 0);
        cr_assert_eq(g_ev[i].self, watchers[at % NWATCHERS], "DOWN went to the wrong watcher");
    }
    pthread_mutex_unlock(&g_ev_mu);
    cr_assert_lt(took, 20000, "10,000 DOWNs took %" PRId64 " ms", took);
    for (int i = 0; i < NMON; i += 97)
        cr_assert_eq(gs_demonitor(rt, g_refs[i]), GS_ENOENT);
    rt_free(rt);
}

Test(monitors, ten_thousand_monitors_all_fire_once_1_worker, .timeout = 120) { ten_thousand_monitors(1); }
Test(monitors, ten_thousand_monitors_all_fire_once_2_workers, .timeout = 120) { ten_thousand_monitors(2); }

Test(monitors, one_watcher_ten_thousand_times, .timeout = 120)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    for (int i = 0; i < NMON; i++)
        g_refs[i] = monitor_ok(rt, w, t);
    cast_int(rt, t, P_CRASH, GS_EAGAIN);
    cr_assert(wait_ev(w, GS_TAG_DOWN, NMON, 30000), "only %d DOWNs", ev_count(w, GS_TAG_DOWN));
    sleep_ms(50);
    ping_ok(rt, w);
    cr_assert_eq(ev_count(w, GS_TAG_DOWN), NMON);
    static gs_ref a[NMON], b[NMON];
    memcpy(a, g_refs, sizeof a);
    pthread_mutex_lock(&g_ev_mu);
    int n = 0;
    for (int i = 0; i < g_nev; i++)
        if (g_ev[i].tag == GS_TAG_DOWN) {
            cr_assert_eq(g_ev[i].down.reason, GS_EAGAIN);
            b[n++] = g_ev[i].down.ref;
        }
    pthread_mutex_unlock(&g_ev_mu);
    qsort(a, NMON, sizeof a[0], cmp_ref);
    qsort(b, NMON, sizeof b[0], cmp_ref);
    cr_assert_eq(memcmp(a, b, sizeof a), 0, "DOWN refs are not the monitors' refs, each once");
    rt_free(rt);
}

/* Memory: every way a monitor can end frees it (ASan's leak check at
 * exit covers this), and records are reused rather than piled up. */
Test(monitors, churn_create_demonitor_fire_no_leak, .timeout = 120)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    gs_pid w2 = start_ok(rt, &probe_ops, NULL);
    /* 1. created and demonitored while the target lives. */
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 1000; i++)
            g_refs[i] = monitor_ok(rt, w, t);
        for (int i = 0; i < 1000; i++)
            cr_assert_eq(gs_demonitor(rt, g_refs[i]), GS_OK);
    }
    ping_ok(rt, t);
    stop_ok(rt, t);
    /* 2. created and fired. */
    int expect = 0;
    for (int round = 0; round < 10; round++) {
        gs_pid x = start_ok(rt, &probe_ops, NULL);
        for (int i = 0; i < 1000; i++)
            monitor_ok(rt, w, x);
        expect += 1000;
        ping_ok(rt, x); /* x has every monitor (test_kill covers monitors queued at gs_kill) */
        if (round % 2)
            stop_ok(rt, x);
        else
            cr_assert_eq(gs_kill(rt, x), GS_OK);
        cr_assert(wait_ev(w, GS_TAG_DOWN, expect, 30000));
    }
    /* 3. fired at a dead target. */
    for (int i = 0; i < 1000; i++)
        monitor_ok(rt, w, t);
    expect += 1000;
    cr_assert(wait_ev(w, GS_TAG_DOWN, expect, 30000));
    /* 4. the watcher dies first: its monitors fire into nothing. */
    gs_pid x = start_ok(rt, &probe_ops, NULL);
    for (int i = 0; i < 1000; i++)
        monitor_ok(rt, w2, x);
    stop_ok(rt, w2);
    stop_ok(rt, x);
    /* 5. fired while the watcher is busy, then the watcher stops with the
     * DOWNs still queued. */
    gs_pid w3 = start_ok(rt, &probe_ops, NULL);
    gs_pid y = start_ok(rt, &probe_ops, NULL);
    for (int i = 0; i < 1000; i++)
        monitor_ok(rt, w3, y);
    block_server(rt, w3);
    stop_ok(rt, y);
    cr_assert_eq(gs_kill(rt, w3), GS_OK);
    gate_open();
    cr_assert(wait_dead(rt, w3, 10000));
    /* 6. left alive at runtime stop. */
    gs_pid z = start_ok(rt, &probe_ops, NULL);
    for (int i = 0; i < 1000; i++)
        monitor_ok(rt, w, z);
    cr_assert_eq(ev_count(w, GS_TAG_DOWN), expect);
    rt_free(rt);
}

/* ------------------------------------------------------------------ */
/* Watchers that die first                                              */
/* ------------------------------------------------------------------ */

/* Monitor records in use (gs_runtime_stats.monitors). */
static uint64_t monitors_in_use(gs_runtime *rt)
{
    gs_runtime_stats st;
    cr_assert_eq(gs_runtime_stats_get(rt, &st), GS_OK);
    return st.monitors;
}

/* Polls until the runtime holds exactly `want` monitor records. */
static bool wait_monitors(gs_runtime *rt, uint64_t want, int timeout_ms)
{
    int64_t end = now_ms() + timeout_ms;
    while (monitors_in_use(rt) != want) {
        if (now_ms() >= end)
            return false;
        sleep_ms(1);
    }
    return true;
}

#define NDEAD 2000 /* short-lived watchers */
#define NLIVE 1500 /* monitors of a watcher that lives on */

/* A long-lived target (a registry, say) is monitored by many servers that
 * live briefly. Their records must not pile up in the target until it
 * exits: the target reclaims them as it gains monitors. The monitors of a
 * watcher that lives on are never reclaimed: each gets its DOWN. */
Test(monitors, dead_watchers_records_are_reclaimed_as_the_target_gains_monitors, .timeout = 120)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    gs_pid live = start_ok(rt, &probe_ops, NULL);
    static gs_ref live_refs[NLIVE];
    int nlive = 0;
    cr_assert_eq(monitors_in_use(rt), 0);
    /* 1. NDEAD watchers each monitor the target and stop; every 8th turn
     * the live watcher monitors too, so that live records sit between
     * dead ones in the target's list. */
    for (int i = 0; i < NDEAD; i++) {
        gs_pid w = start_ok(rt, &probe_ops, NULL);
        monitor_ok(rt, w, t);
        stop_ok(rt, w);
        if (i % 8 == 0)
            live_refs[nlive++] = monitor_ok(rt, live, t);
    }
    ping_ok(rt, t); /* the target has taken in every monitor */
    uint64_t after_dead = monitors_in_use(rt);
    cr_assert_geq(after_dead, (uint64_t)nlive, "%" PRIu64 " records, fewer than the %d live monitors",
                  after_dead, nlive);
    /* The target looks at 2 records per monitor it takes in, from a cursor
     * going round its list; what dead records remain were added during
     * the cursor's last turn or two, a turn over L records taking at most
     * L/2 monitors. The live records lengthen the turns: about 4 dead per
     * 5 live may remain here (200). A quarter of NDEAD is a generous
     * bound, and far below the NDEAD + nlive of a target that keeps dead
     * watchers' records until it exits. */
    cr_assert_leq(after_dead, (uint64_t)(nlive + NDEAD / 4),
                  "%" PRIu64 " monitor records after %d watchers monitored and died (%d live monitors)",
                  after_dead, NDEAD, nlive);
    /* 2. The live watcher adds the rest of its monitors: every record of
     * the list of L = after_dead is looked at within 3L/4 new monitors, so
     * every dead one goes, and no live one may. */
    cr_assert_leq(after_dead * 3 / 4, (uint64_t)(NLIVE - nlive));
    while (nlive < NLIVE)
        live_refs[nlive++] = monitor_ok(rt, live, t);
    ping_ok(rt, t);
    uint64_t after_live = monitors_in_use(rt);
    cr_assert_eq(after_live, (uint64_t)NLIVE, "%" PRIu64 " monitor records for %d live monitors", after_live,
                 NLIVE);
    /* 3. The target exits: every live monitor fires once, exactly. */
    stop_ok(rt, t);
    cr_assert(wait_ev(live, GS_TAG_DOWN, NLIVE, 30000), "only %d of %d DOWNs", ev_count(live, GS_TAG_DOWN),
              NLIVE);
    ping_ok(rt, live);
    cr_assert_eq(ev_count(live, GS_TAG_DOWN), NLIVE);
    for (int i = 0; i < NLIVE; i++)
        cr_assert_eq(down_count(live_refs[i]), 1, "live monitor %d: %d DOWNs", i, down_count(live_refs[i]));
    ev e;
    cr_assert(ev_find(live, GS_TAG_DOWN, &e));
    cr_assert_eq(e.down.pid, t);
    cr_assert_eq(e.down.reason, GS_NORMAL);
    /* Every DOWN taken: nothing is left. */
    cr_assert(wait_monitors(rt, 0, 10000), "%" PRIu64 " monitor records left", monitors_in_use(rt));
    rt_free(rt);
}

/* gs_demonitor from outside threads while the target reclaims the
 * records of dead watchers: each call says GS_OK or GS_ENOENT, the record
 * is freed once either way (ASan: no double free; the count: no record
 * kept), and the live watcher's monitors still fire. */
#define NRACE 1000
#define NDEMON_THREADS 2

typedef struct demon_job {
    gs_runtime *rt;
    const gs_ref *refs;
    int from, to;
    atomic_int *bad; /* calls that returned neither GS_OK nor GS_ENOENT */
    atomic_int *ok;
} demon_job;

static atomic_int g_go;

static void *demonitor_thread(void *p)
{
    demon_job *j = p;
    while (atomic_load(&g_go) == 0)
        sched_yield();
    for (int i = j->from; i < j->to; i++) {
        int rc = gs_demonitor(j->rt, j->refs[i]);
        if (rc == GS_OK)
            atomic_fetch_add(j->ok, 1);
        else if (rc != GS_ENOENT)
            atomic_fetch_add(j->bad, 1);
    }
    return NULL;
}

typedef struct more_job {
    gs_runtime *rt;
    gs_pid watcher, target;
    int n;
    atomic_int *fails;
} more_job;

static void *monitor_more_thread(void *p)
{
    more_job *j = p;
    while (atomic_load(&g_go) == 0)
        sched_yield();
    for (int i = 0; i < j->n; i++) {
        gs_ref r = 0;
        if (gs_monitor(j->rt, j->watcher, j->target, &r) != GS_OK || r == 0)
            atomic_fetch_add(j->fails, 1);
    }
    return NULL;
}

static void demonitor_races_reclaim(unsigned workers)
{
    probe_reset();
    atomic_store(&g_go, 0);
    gs_runtime *rt = rt_new(workers);
    gs_pid t = start_ok(rt, &probe_ops, NULL);
    gs_pid live = start_ok(rt, &probe_ops, NULL);
    static gs_ref refs[NRACE];
    /* The target holds its mailbox while NRACE watchers monitor it and
     * die: when it resumes, every record it takes in is reclaimable. */
    block_server(rt, t);
    for (int i = 0; i < NRACE; i++) {
        gs_pid w = start_ok(rt, &probe_ops, NULL);
        refs[i] = monitor_ok(rt, w, t);
        stop_ok(rt, w);
    }
    atomic_int bad = 0, ok = 0, fails = 0;
    pthread_t th[NDEMON_THREADS + 1];
    demon_job dj[NDEMON_THREADS];
    for (int k = 0; k < NDEMON_THREADS; k++) {
        /* Overlapping halves of the first three quarters: some refs are
         * demonitored twice at once; the last quarter only the target's
         * reclaiming can free. */
        dj[k] = (demon_job){rt, refs, k * NRACE / 4, k * NRACE / 4 + NRACE / 2, &bad, &ok};
        cr_assert_eq(pthread_create(&th[k], NULL, demonitor_thread, &dj[k]), 0);
    }
    more_job mj = {rt, live, t, NRACE, &fails};
    cr_assert_eq(pthread_create(&th[NDEMON_THREADS], NULL, monitor_more_thread, &mj), 0);
    atomic_store(&g_go, 1);
    gate_open();
    for (int k = 0; k <= NDEMON_THREADS; k++)
        pthread_join(th[k], NULL);
    cr_assert_eq(atomic_load(&bad), 0, "%d gs_demonitor calls said neither GS_OK nor GS_ENOENT",
                 atomic_load(&bad));
    cr_assert_eq(atomic_load(&fails), 0, "%d gs_monitor calls failed", atomic_load(&fails));
    cr_assert_leq(atomic_load(&ok), NRACE, "a monitor was removed twice");
    /* Once the target has taken in every monitor (the ping queues behind
     * them), no gs_demonitor of the dead watchers' finds anything: each
     * was demonitored or reclaimed. */
    ping_ok(rt, t);
    for (int i = 0; i < NRACE; i++)
        cr_assert_eq(gs_demonitor(rt, refs[i]), GS_ENOENT, "ref %d still demonitorable", i);
    /* What is left is the live watcher's records. */
    cr_assert(wait_monitors(rt, NRACE, 10000), "%" PRIu64 " monitor records, want the %d live ones",
              monitors_in_use(rt), NRACE);
    stop_ok(rt, t);
    cr_assert(wait_ev(live, GS_TAG_DOWN, NRACE, 30000), "only %d of %d DOWNs", ev_count(live, GS_TAG_DOWN),
              NRACE);
    cr_assert(wait_monitors(rt, 0, 10000), "%" PRIu64 " monitor records left", monitors_in_use(rt));
    ping_ok(rt, live);
    cr_assert_eq(ev_count(GS_NOPID, GS_TAG_DOWN), NRACE, "a DOWN for a dead watcher's monitor");
    rt_free(rt);
}

Test(monitors, demonitor_races_reclaim_of_dead_watchers_2_workers, .timeout = 120) { demonitor_races_reclaim(2); }
Test(monitors, demonitor_races_reclaim_of_dead_watchers_4_workers, .timeout = 120) { demonitor_races_reclaim(4); }
