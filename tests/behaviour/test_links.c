/* test_links.c - gs_link / gs_unlink / gs_trap_exits and exit signals. */
#include "common.h"

#include "probe.h"

/* `how`: 0 crash (callback returns reason), 1 gs_stop(reason), 2 GS_STOP
 * with gs_set_exit_reason(reason). */
static void make_exit(gs_runtime *rt, gs_pid t, int how, int reason)
{
    if (how == 0) {
        cast_int(rt, t, P_CRASH, reason);
    } else if (how == 1) {
        int rc = gs_stop(rt, t, reason, 10000);
        cr_assert_eq(rc, GS_OK, "gs_stop: %d", rc);
    } else {
        cast_int(rt, t, P_STOP_WITH, reason);
    }
}

/* A links to B from a callback; B exits abnormally; A exits with the same
 * reason and its terminate runs with it. `reverse`: A is the one exiting. */
static void crash_propagates(unsigned workers, int how, int reason, bool reverse)
{
    probe_reset();
    gs_runtime *rt = rt_new(workers);
    gs_pid a = start_ok(rt, &probe_ops, NULL);
    gs_pid b = start_ok(rt, &probe_ops, NULL);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    link_ok(rt, a, b);
    ping_ok(rt, b);
    gs_pid dies = reverse ? a : b, other = reverse ? b : a;
    gs_ref ref = monitor_ok(rt, w, other);
    make_exit(rt, dies, how, reason);
    cr_assert(wait_term(other, 10000), "the linked server did not exit (reason %d)", reason);
    cr_assert_eq(term_reason(other), reason, "linked server's terminate got %d, want %d",
                 term_reason(other), reason);
    cr_assert_eq(term_reason(dies), reason);
    cr_assert(wait_ev(w, GS_TAG_DOWN, 1, 10000));
    ev e;
    cr_assert(ev_find(w, GS_TAG_DOWN, &e));
    cr_assert_eq(e.down.ref, ref);
    cr_assert_eq(e.down.reason, reason, "monitor of the linked server saw %d", e.down.reason);
    cr_assert(wait_dead(rt, other, 5000));
    sleep_ms(20);
    cr_assert_eq(term_count(other), 1);
    cr_assert_eq(term_count(dies), 1);
    rt_free(rt);
}

Test(links, crash_kills_linked_server_1_worker, .timeout = 30) { crash_propagates(1, 0, GS_EAGAIN, false); }
Test(links, crash_kills_linked_server_2_workers, .timeout = 30) { crash_propagates(2, 0, GS_EAGAIN, false); }
Test(links, links_are_two_way, .timeout = 30) { crash_propagates(2, 0, GS_ENOMEM, true); }
Test(links, user_reason_propagates, .timeout = 30) { crash_propagates(2, 1, 42, false); }
Test(links, shutdown_propagates, .timeout = 30) { crash_propagates(2, 1, GS_SHUTDOWN, false); }
Test(links, set_exit_reason_propagates, .timeout = 30) { crash_propagates(1, 2, 99, true); }

static void normal_exit_spares(unsigned workers, int how)
{
    probe_reset();
    gs_runtime *rt = rt_new(workers);
    gs_pid a = start_ok(rt, &probe_ops, NULL);
    gs_pid b = start_ok(rt, &probe_ops, NULL);
    gs_pid ctl = start_ok(rt, &probe_ops, NULL);
    link_ok(rt, a, b);
    monitor_ok(rt, ctl, b);
    if (how == 0)
        stop_ok(rt, b);
    else
        cast_int(rt, b, P_STOP, 0);
    cr_assert(wait_ev(ctl, GS_TAG_DOWN, 1, 10000));
    sleep_ms(50);
    ping_ok(rt, a);
    cr_assert_eq(term_count(a), 0, "a GS_NORMAL exit killed a linked server");
    cr_assert_eq(ev_count(a, GS_TAG_EXIT), 0, "a non-trapping server got an EXIT message");
    cr_assert_eq(term_reason(b), GS_NORMAL);
    /* Later abnormal exits of others do not reach it either (the link is gone). */
    rt_free(rt);
}

Test(links, normal_stop_does_not_kill_1_worker, .timeout = 20) { normal_exit_spares(1, 0); }
Test(links, normal_stop_does_not_kill_2_workers, .timeout = 20) { normal_exit_spares(2, 0); }
Test(links, stop_return_does_not_kill, .timeout = 20) { normal_exit_spares(2, 1); }

/* A trapping server gets GS_TAG_EXIT {pid, reason} for every reason, and
 * keeps running. */
static void trap_one(unsigned workers, int how, int reason)
{
    probe_reset();
    gs_runtime *rt = rt_new(workers);
    gs_pid a = start_ok(rt, &probe_ops, NULL);
    gs_pid b = start_ok(rt, &probe_ops, NULL);
    trap_on(rt, a);
    link_ok(rt, a, b);
    ping_ok(rt, b);
    if (how == 3)
        cr_assert_eq(gs_kill(rt, b), GS_OK);
    else
        make_exit(rt, b, how, reason);
    cr_assert(wait_ev(a, GS_TAG_EXIT, 1, 10000), "no EXIT message for reason %d", reason);
    ev e;
    cr_assert(ev_find(a, GS_TAG_EXIT, &e));
    cr_assert_eq(e.tag, GS_TAG_EXIT);
    cr_assert_eq(e.len, sizeof(gs_exit_signal), "EXIT len %zu", e.len);
    cr_assert_eq(e.ex.pid, b);
    cr_assert_eq(e.ex.reason, reason, "EXIT reason %d, want %d", e.ex.reason, reason);
    cr_assert(e.sender == GS_NOPID || e.sender == b, "EXIT sender %" PRIx64, e.sender);
    sleep_ms(30);
    ping_ok(rt, a);
    cr_assert_eq(term_count(a), 0, "a trapping server exited");
    cr_assert_eq(ev_count(a, GS_TAG_EXIT), 1);
    rt_free(rt);
    cr_assert_eq(term_reason(a), GS_SHUTDOWN);
}

Test(links, trap_normal_stop, .timeout = 20) { trap_one(2, 1, GS_NORMAL); }
Test(links, trap_normal_stop_return, .timeout = 20) { trap_one(1, 2, GS_NORMAL); }
Test(links, trap_shutdown, .timeout = 20) { trap_one(2, 1, GS_SHUTDOWN); }
Test(links, trap_crash_1_worker, .timeout = 20) { trap_one(1, 0, GS_EAGAIN); }
Test(links, trap_crash_2_workers, .timeout = 20) { trap_one(2, 0, GS_EAGAIN); }
Test(links, trap_user_reason, .timeout = 20) { trap_one(2, 2, 1234); }
Test(links, trap_killed, .timeout = 20) { trap_one(2, 3, GS_KILLED); }

/* Trapping can be turned off again. */
Test(links, trap_off_again_means_exit, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid a = start_ok(rt, &probe_ops, NULL);
    gs_pid b = start_ok(rt, &probe_ops, NULL);
    trap_on(rt, a);
    cr_assert_eq(pcall(rt, a, K_TRAP, (gs_pid)0, NULL, NULL), GS_OK);
    link_ok(rt, a, b);
    cast_int(rt, b, P_CRASH, GS_EAGAIN);
    cr_assert(wait_term(a, 10000));
    cr_assert_eq(term_reason(a), GS_EAGAIN);
    cr_assert_eq(ev_count(a, GS_TAG_EXIT), 0);
    rt_free(rt);
}

/* Slots are reused: a server must not inherit trap_exits from the last
 * server in its slot (a supervisor's, say: the children of a killed
 * supervisor then survived). Every slot a fresh server can take here was
 * a trapping server's. */
Test(links, a_new_server_does_not_inherit_trap_exits_from_its_slot, .timeout = 60)
{
    enum { TRAPPERS = 256, FRESH = 16 };
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid *trappers = calloc(TRAPPERS, sizeof *trappers);
    cr_assert_not_null(trappers);
    for (int i = 0; i < TRAPPERS; i++) {
        trappers[i] = start_ok(rt, &probe_ops, NULL);
        trap_on(rt, trappers[i]);
    }
    for (int i = 0; i < TRAPPERS; i++)
        stop_ok(rt, trappers[i]);
    free(trappers);
    gs_pid a[FRESH], b[FRESH];
    for (int i = 0; i < FRESH; i++) {
        a[i] = start_ok(rt, &probe_ops, NULL);
        b[i] = start_ok(rt, &probe_ops, NULL);
        link_ok(rt, a[i], b[i]);
    }
    for (int i = 0; i < FRESH; i++)
        cast_int(rt, b[i], P_CRASH, GS_EAGAIN);
    for (int i = 0; i < FRESH; i++) {
        cr_assert(wait_term(a[i], 10000), "fresh server %d ignored its link's exit signal", i);
        cr_assert_eq(term_reason(a[i]), GS_EAGAIN);
        cr_assert_eq(ev_count(a[i], GS_TAG_EXIT), 0, "fresh server %d trapped exits", i);
    }
    rt_free(rt);
}

/* A server whose init links to another, then refuses quietly (GS_STOP),
 * never existed: its link sees a normal exit and its partner lives on (as
 * OTP's ignore). One whose init fails passes its code on. */
static _Atomic gs_pid refuser_partner;
static atomic_int refuser_rc;

static int refuser_init(gs_ctx *ctx, void *state, const void *arg)
{
    cr_assert_eq(gs_link(ctx, atomic_load(&refuser_partner)), GS_OK);
    return atomic_load(&refuser_rc);
}

static const gs_server_ops refuser_ops = {.name = "refuser", .init = refuser_init};

Test(links, a_server_refused_by_its_init_exits_normally_for_its_links, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid v = start_ok(rt, &probe_ops, NULL);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    atomic_store(&refuser_partner, v);
    atomic_store(&refuser_rc, GS_STOP);
    gs_pid r;
    cr_assert_eq(gs_start(rt, &refuser_ops, NULL, &r), GS_ECANCELED);
    sleep_ms(100);
    ping_ok(rt, v);
    cr_assert_eq(term_count(v), 0, "refusing quietly killed the server init linked to");
    /* init failing with a code: that code goes through the link */
    atomic_store(&refuser_partner, w);
    atomic_store(&refuser_rc, GS_EAGAIN);
    cr_assert_eq(gs_start(rt, &refuser_ops, NULL, &r), GS_EAGAIN);
    cr_assert(wait_term(w, 10000), "init's failure did not reach the server it linked to");
    cr_assert_eq(term_reason(w), GS_EAGAIN);
    rt_free(rt);
}

/* Linking twice is one link: one signal. */
Test(links, link_twice_one_signal, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid a = start_ok(rt, &probe_ops, NULL);
    gs_pid b = start_ok(rt, &probe_ops, NULL);
    trap_on(rt, a);
    link_ok(rt, a, b);
    link_ok(rt, a, b);
    link_ok(rt, b, a); /* from the other side too */
    cast_int(rt, b, P_CRASH, GS_EAGAIN);
    cr_assert(wait_ev(a, GS_TAG_EXIT, 1, 10000));
    sleep_ms(50);
    ping_ok(rt, a);
    cr_assert_eq(ev_count(a, GS_TAG_EXIT), 1);
    rt_free(rt);
}

/* gs_unlink, from either side, then an exit: no signal. */
static void unlink_then_exit(unsigned workers, bool trap, bool from_other_side)
{
    probe_reset();
    gs_runtime *rt = rt_new(workers);
    gs_pid a = start_ok(rt, &probe_ops, NULL);
    gs_pid b = start_ok(rt, &probe_ops, NULL);
    gs_pid ctl = start_ok(rt, &probe_ops, NULL);
    if (trap)
        trap_on(rt, a);
    link_ok(rt, a, b);
    int64_t st = 12345;
    if (from_other_side)
        cr_assert_eq(pcall(rt, b, K_UNLINK, a, &st, NULL), GS_OK);
    else
        cr_assert_eq(pcall(rt, a, K_UNLINK, b, &st, NULL), GS_OK);
    cr_assert_eq(st, GS_OK);
    ping_ok(rt, a);
    ping_ok(rt, b);
    monitor_ok(rt, ctl, b);
    cast_int(rt, b, P_CRASH, GS_EAGAIN);
    cr_assert(wait_ev(ctl, GS_TAG_DOWN, 1, 10000));
    sleep_ms(50);
    ping_ok(rt, a);
    cr_assert_eq(term_count(a), 0, "an unlinked server was killed");
    cr_assert_eq(ev_count(a, GS_TAG_EXIT), 0, "an unlinked server got an EXIT");
    rt_free(rt);
}

Test(links, unlink_then_crash_no_signal_trapping, .timeout = 20) { unlink_then_exit(2, true, false); }
Test(links, unlink_then_crash_no_signal_plain, .timeout = 20) { unlink_then_exit(1, false, false); }
Test(links, unlink_from_other_side, .timeout = 20) { unlink_then_exit(2, true, true); }
Test(links, unlink_from_other_side_plain, .timeout = 20) { unlink_then_exit(2, false, true); }

Test(links, bad_links, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid a = start_ok(rt, &probe_ops, NULL);
    gs_pid dead = start_ok(rt, &probe_ops, NULL);
    stop_ok(rt, dead);
    int64_t st = 12345;
    cr_assert_eq(pcall(rt, a, K_LINK, dead, &st, NULL), GS_OK);
    cr_assert_eq(st, GS_ENOPROC, "link to a dead pid: %d", (int)st);
    cr_assert_eq(pcall(rt, a, K_LINK, GS_NOPID, &st, NULL), GS_OK);
    cr_assert_eq(st, GS_ENOPROC, "link to GS_NOPID: %d", (int)st);
    cr_assert_eq(pcall(rt, a, K_LINK, (gs_pid)0x00ABCDEF00123457ull, &st, NULL), GS_OK);
    cr_assert_eq(st, GS_ENOPROC, "link to a made-up pid: %d", (int)st);
    cr_assert_eq(pcall(rt, a, K_LINK_SELF, GS_NOPID, &st, NULL), GS_OK);
    cr_assert_eq(st, GS_EINVAL, "link to self: %d", (int)st);
    cr_assert_eq(pcall(rt, a, K_UNLINK, dead, &st, NULL), GS_OK);
    cr_assert_eq(st, GS_OK, "unlink without a link: %d", (int)st);
    cr_assert_eq(gs_link(NULL, a), GS_EINVAL);
    cr_assert_eq(gs_unlink(NULL, a), GS_EINVAL);
    gs_trap_exits(NULL, 1); /* harmless */
    /* The failed link left nothing behind: a lives on normally. */
    ping_ok(rt, a);
    stop_ok(rt, a);
    cr_assert_eq(term_reason(a), GS_NORMAL);
    rt_free(rt);
}

/* A - B - C: C crashes, B and A exit with its reason. */
static void chain(unsigned workers)
{
    probe_reset();
    gs_runtime *rt = rt_new(workers);
    gs_pid a = start_ok(rt, &probe_ops, NULL);
    gs_pid b = start_ok(rt, &probe_ops, NULL);
    gs_pid c = start_ok(rt, &probe_ops, NULL);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    link_ok(rt, a, b);
    link_ok(rt, b, c);
    ping_ok(rt, a);
    ping_ok(rt, c);
    gs_ref ra = monitor_ok(rt, w, a);
    gs_ref rb = monitor_ok(rt, w, b);
    cast_int(rt, c, P_CRASH, GS_EMSGSIZE);
    cr_assert(wait_term(a, 10000), "A did not exit");
    cr_assert(wait_term(b, 10000), "B did not exit");
    cr_assert_eq(term_reason(c), GS_EMSGSIZE);
    cr_assert_eq(term_reason(b), GS_EMSGSIZE);
    cr_assert_eq(term_reason(a), GS_EMSGSIZE);
    cr_assert(wait_ev(w, GS_TAG_DOWN, 2, 10000));
    cr_assert_eq(down_count(ra), 1);
    cr_assert_eq(down_count(rb), 1);
    pthread_mutex_lock(&g_ev_mu);
    for (int i = 0; i < g_nev; i++)
        if (g_ev[i].tag == GS_TAG_DOWN)
            cr_assert_eq(g_ev[i].down.reason, GS_EMSGSIZE);
    pthread_mutex_unlock(&g_ev_mu);
    ping_ok(rt, w);
    rt_free(rt);
}

Test(links, chain_a_b_c_1_worker, .timeout = 30) { chain(1); }
Test(links, chain_a_b_c_2_workers, .timeout = 30) { chain(2); }

/* A trapping middle server stops the chain. */
Test(links, trapping_middle_stops_the_chain, .timeout = 30)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid a = start_ok(rt, &probe_ops, NULL);
    gs_pid b = start_ok(rt, &probe_ops, NULL);
    gs_pid c = start_ok(rt, &probe_ops, NULL);
    trap_on(rt, b);
    link_ok(rt, a, b);
    link_ok(rt, b, c);
    cast_int(rt, c, P_CRASH, GS_EAGAIN);
    cr_assert(wait_ev(b, GS_TAG_EXIT, 1, 10000));
    sleep_ms(50);
    ping_ok(rt, a);
    ping_ok(rt, b);
    cr_assert_eq(term_count(a), 0);
    cr_assert_eq(term_count(b), 0);
    rt_free(rt);
}

/* The link is made while the other server still lives but already has a
 * crash queued: gs_link returns GS_OK, so the crash must reach us. */
static void link_to_doomed(unsigned workers)
{
    probe_reset();
    gs_runtime *rt = rt_new(workers);
    gs_pid a = start_ok(rt, &probe_ops, NULL);
    gs_pid b = start_ok(rt, &probe_ops, NULL);
    block_server(rt, b);
    cast_int(rt, b, P_CRASH, GS_EAGAIN);
    int64_t st = 12345;
    cr_assert_eq(pcall(rt, a, K_LINK, b, &st, NULL), GS_OK);
    cr_assert_eq(st, GS_OK);
    gate_open();
    cr_assert(wait_term(b, 10000));
    cr_assert(wait_term(a, 10000), "linked to a server with a crash queued: not killed");
    cr_assert_eq(term_reason(a), GS_EAGAIN);
    rt_free(rt);
}

Test(links, link_to_server_with_crash_queued_2_workers, .timeout = 30) { link_to_doomed(2); }
Test(links, link_to_server_with_crash_queued_4_workers, .timeout = 30) { link_to_doomed(4); }

/* Exit signals travel through the mailbox: casts sent to the trapping
 * server before the partner's crash are handled before the EXIT. */
Test(links, exit_signal_is_ordered_after_earlier_messages, .timeout = 30)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid a = start_ok(rt, &probe_ops, NULL);
    gs_pid b = start_ok(rt, &probe_ops, NULL);
    trap_on(rt, a);
    link_ok(rt, a, b);
    /* a's K_LINK woke b on a's worker; let b take its MSG_LINK before a
     * blocks that worker (see the report: a server woken by a callback
     * waits in that worker's LIFO slot, which other workers do not steal). */
    ping_ok(rt, b);
    block_server(rt, a);
    cast_int(rt, b, P_CRASH, GS_EAGAIN);
    cr_assert(wait_term(b, 10000));
    sleep_ms(50);
    cr_assert_eq(ev_count(a, GS_TAG_EXIT), 0, "EXIT handled while the server was busy");
    gate_open();
    cr_assert(wait_ev(a, GS_TAG_EXIT, 1, 10000));
    ping_ok(rt, a);
    cr_assert_eq(term_count(a), 0);
    rt_free(rt);
}

/* Many links on one server: all partners die with its crash. */
Test(links, many_linked_servers_all_exit, .timeout = 60)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    enum { N = 200 };
    static gs_pid p[N];
    gs_pid hub = start_ok(rt, &probe_ops, NULL);
    for (int i = 0; i < N; i++) {
        p[i] = start_ok(rt, &probe_ops, NULL);
        link_ok(rt, p[i], hub);
    }
    ping_ok(rt, hub);
    cast_int(rt, hub, P_CRASH, GS_ENOTSUP);
    for (int i = 0; i < N; i++) {
        cr_assert(wait_term(p[i], 10000), "partner %d did not exit", i);
        cr_assert_eq(term_reason(p[i]), GS_ENOTSUP);
    }
    rt_free(rt);
}
