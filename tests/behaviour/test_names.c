/* test_names.c - gs_register / gs_unregister / gs_whereis and addressing
 * by name. */
#include "common.h"

#include "probe.h"

static void name_of_len(char *buf, size_t n, char fill)
{
    memset(buf, fill, n);
    buf[n] = '\0';
}

Test(names, register_whereis_unregister, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid a = start_ok(rt, &probe_ops, NULL);
    gs_pid got = 777;
    cr_assert_eq(gs_whereis(rt, "alpha", &got), GS_ENOENT);
    cr_assert_eq(gs_register(rt, "alpha", a), GS_OK);
    cr_assert_eq(gs_whereis(rt, "alpha", &got), GS_OK);
    cr_assert_eq(got, a);
    cr_assert_eq(gs_unregister(rt, "alpha"), GS_OK);
    cr_assert_eq(gs_whereis(rt, "alpha", &got), GS_ENOENT);
    cr_assert_eq(gs_unregister(rt, "alpha"), GS_ENOENT);
    /* Unregistering does not touch the server. */
    ping_ok(rt, a);
    cr_assert_eq(term_count(a), 0);
    /* Names are case-sensitive and exact. */
    cr_assert_eq(gs_register(rt, "Alpha", a), GS_OK);
    cr_assert_eq(gs_whereis(rt, "alpha", &got), GS_ENOENT);
    cr_assert_eq(gs_whereis(rt, "Alph", &got), GS_ENOENT);
    cr_assert_eq(gs_whereis(rt, "Alpha ", &got), GS_ENOENT);
    cr_assert_eq(gs_whereis(rt, "Alpha", &got), GS_OK);
    rt_free(rt);
}

Test(names, name_is_copied, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(1);
    gs_pid a = start_ok(rt, &probe_ops, NULL);
    char buf[32];
    snprintf(buf, sizeof buf, "copied-name");
    cr_assert_eq(gs_register(rt, buf, a), GS_OK);
    memset(buf, 'x', sizeof buf - 1);
    buf[sizeof buf - 1] = '\0';
    gs_pid got = 0;
    cr_assert_eq(gs_whereis(rt, "copied-name", &got), GS_OK);
    cr_assert_eq(got, a);
    cr_assert_eq(gs_whereis(rt, buf, &got), GS_ENOENT);
    rt_free(rt);
}

Test(names, taken_name_is_eexist, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid a = start_ok(rt, &probe_ops, NULL);
    gs_pid b = start_ok(rt, &probe_ops, NULL);
    cr_assert_eq(gs_register(rt, "svc", a), GS_OK);
    cr_assert_eq(gs_register(rt, "svc", b), GS_EEXIST);
    cr_assert_eq(gs_register(rt, "svc", a), GS_EEXIST);
    gs_pid got = 0;
    cr_assert_eq(gs_whereis(rt, "svc", &got), GS_OK);
    cr_assert_eq(got, a, "a refused registration changed the name");
    rt_free(rt);
}

Test(names, invalid_names_and_arguments, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(1);
    gs_pid a = start_ok(rt, &probe_ops, NULL);
    static char longest[GS_NAME_MAX + 1], too_long[GS_NAME_MAX + 2], way_too_long[4096];
    name_of_len(longest, GS_NAME_MAX, 'L');
    name_of_len(too_long, GS_NAME_MAX + 1, 'T');
    name_of_len(way_too_long, sizeof way_too_long - 1, 'W');
    gs_pid got = 0;
    cr_assert_eq(gs_register(rt, NULL, a), GS_EINVAL);
    cr_assert_eq(gs_register(rt, "", a), GS_EINVAL);
    cr_assert_eq(gs_register(rt, too_long, a), GS_EINVAL);
    cr_assert_eq(gs_register(rt, way_too_long, a), GS_EINVAL);
    cr_assert_eq(gs_register(NULL, "x", a), GS_EINVAL);
    cr_assert_eq(gs_unregister(rt, NULL), GS_EINVAL);
    cr_assert_eq(gs_unregister(rt, ""), GS_EINVAL);
    cr_assert_eq(gs_unregister(rt, too_long), GS_EINVAL);
    cr_assert_eq(gs_unregister(NULL, "x"), GS_EINVAL);
    cr_assert_eq(gs_whereis(rt, NULL, &got), GS_EINVAL);
    cr_assert_eq(gs_whereis(rt, "", &got), GS_EINVAL);
    cr_assert_eq(gs_whereis(rt, too_long, &got), GS_EINVAL);
    cr_assert_eq(gs_whereis(rt, "x", NULL), GS_EINVAL);
    cr_assert_eq(gs_whereis(NULL, "x", &got), GS_EINVAL);
    /* GS_NAME_MAX bytes is fine. */
    cr_assert_eq(gs_register(rt, longest, a), GS_OK);
    cr_assert_eq(gs_whereis(rt, longest, &got), GS_OK);
    cr_assert_eq(got, a);
    /* A name that is a prefix of a too-long one is not confused with it. */
    char prefix[GS_NAME_MAX + 1];
    memcpy(prefix, too_long, GS_NAME_MAX);
    prefix[GS_NAME_MAX] = '\0';
    cr_assert_eq(gs_register(rt, prefix, a), GS_OK);
    cr_assert_eq(gs_whereis(rt, too_long, &got), GS_EINVAL);
    cr_assert_eq(gs_unregister(rt, longest), GS_OK);
    /* A single byte, and bytes outside ASCII. */
    cr_assert_eq(gs_register(rt, "x", a), GS_OK);
    cr_assert_eq(gs_register(rt, "\xc3\xa9t\xc3\xa9", a), GS_OK);
    cr_assert_eq(gs_whereis(rt, "\xc3\xa9t\xc3\xa9", &got), GS_OK);
    rt_free(rt);
}

Test(names, register_dead_pid_is_enoproc, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid a = start_ok(rt, &probe_ops, NULL);
    stop_ok(rt, a);
    cr_assert_eq(gs_register(rt, "ghost", a), GS_ENOPROC);
    cr_assert_eq(gs_register(rt, "ghost", GS_NOPID), GS_ENOPROC);
    cr_assert_eq(gs_register(rt, "ghost", (gs_pid)0x00ABCDEF00123457ull), GS_ENOPROC);
    gs_pid got = 0;
    cr_assert_eq(gs_whereis(rt, "ghost", &got), GS_ENOENT);
    /* A new server in the dead one's slot does not inherit anything. */
    gs_pid b = start_ok(rt, &probe_ops, NULL);
    cr_assert_eq(gs_register(rt, "ghost", b), GS_OK);
    cr_assert_eq(gs_whereis(rt, "ghost", &got), GS_OK);
    cr_assert_eq(got, b);
    rt_free(rt);
}

/* `how`: 0 gs_stop, 1 crash, 2 kill, 3 GS_STOP return. */
static void exit_releases(unsigned workers, int how)
{
    probe_reset();
    gs_runtime *rt = rt_new(workers);
    gs_pid a = start_ok(rt, &probe_ops, NULL);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    snprintf(g_watch_name, sizeof g_watch_name, "released-%d", how);
    cr_assert_eq(gs_register(rt, g_watch_name, a), GS_OK);
    gs_ref ref = monitor_ok(rt, w, a);
    ping_ok(rt, a);
    gs_pid got = 0;
    if (how == 0) {
        stop_ok(rt, a);
        /* gs_stop returned: the server has terminated, its name is free. */
        cr_assert_eq(gs_whereis(rt, g_watch_name, &got), GS_ENOENT, "name still registered after gs_stop");
    } else if (how == 1) {
        cast_int(rt, a, P_CRASH, GS_EAGAIN);
    } else if (how == 2) {
        cr_assert_eq(gs_kill(rt, a), GS_OK);
    } else {
        cast_int(rt, a, P_STOP, 0);
    }
    cr_assert(wait_ev(w, GS_TAG_DOWN, 1, 10000));
    ev e;
    cr_assert(ev_find(w, GS_TAG_DOWN, &e));
    cr_assert_eq(e.down.ref, ref);
    cr_assert_eq(e.whereis_rc, GS_ENOENT,
                 "in the DOWN handler gs_whereis gave %d (pid %" PRIx64 "): the name outlived the monitor",
                 e.whereis_rc, e.whereis_pid);
    cr_assert_eq(gs_whereis(rt, g_watch_name, &got), GS_ENOENT);
    cr_assert_eq(gs_unregister(rt, g_watch_name), GS_ENOENT);
    /* The same name for a new server. */
    gs_pid b = start_ok(rt, &probe_ops, NULL);
    cr_assert_eq(gs_register(rt, g_watch_name, b), GS_OK);
    cr_assert_eq(gs_whereis(rt, g_watch_name, &got), GS_OK);
    cr_assert_eq(got, b);
    rt_free(rt);
}

Test(names, released_at_gs_stop_before_down_1_worker, .timeout = 20) { exit_releases(1, 0); }
Test(names, released_at_gs_stop_before_down_2_workers, .timeout = 20) { exit_releases(2, 0); }
Test(names, released_at_crash_before_down, .timeout = 20) { exit_releases(2, 1); }
Test(names, released_at_kill_before_down, .timeout = 20) { exit_releases(2, 2); }
Test(names, released_at_stop_return_before_down, .timeout = 20) { exit_releases(1, 3); }

/* The supervisor pattern: in the DOWN handler, register the same name for
 * a replacement: never GS_EEXIST. Many rounds, 1 and 2 workers. */
static void reregister_in_down(unsigned workers)
{
    probe_reset();
    gs_runtime *rt = rt_new(workers);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    snprintf(g_watch_name, sizeof g_watch_name, "restartable");
    gs_pid cur = start_ok(rt, &probe_ops, NULL);
    cr_assert_eq(gs_register(rt, g_watch_name, cur), GS_OK);
    for (int round = 0; round < 100; round++) {
        gs_pid next = start_ok(rt, &probe_ops, NULL);
        atomic_store(&g_reg_pid, next);
        monitor_ok(rt, w, cur);
        ping_ok(rt, cur); /* the monitor has reached cur (see test_kill: queued messages at gs_kill) */
        if (round % 3 == 0)
            cast_int(rt, cur, P_CRASH, GS_EAGAIN);
        else if (round % 3 == 1)
            cr_assert_eq(gs_kill(rt, cur), GS_OK);
        else
            stop_ok(rt, cur);
        cr_assert(wait_ev(w, GS_TAG_DOWN, round + 1, 10000), "round %d: no DOWN", round);
        pthread_mutex_lock(&g_ev_mu);
        ev e = g_ev[g_nev - 1];
        pthread_mutex_unlock(&g_ev_mu);
        cr_assert_eq(e.down.pid, cur);
        cr_assert_eq(e.whereis_rc, GS_ENOENT, "round %d: whereis in DOWN gave %d", round, e.whereis_rc);
        cr_assert_eq(e.reg_rc, GS_OK, "round %d: re-registering in DOWN gave %d (%s)", round, e.reg_rc,
                     gs_strerror(e.reg_rc));
        gs_pid got = 0;
        cr_assert_eq(gs_whereis(rt, g_watch_name, &got), GS_OK);
        cr_assert_eq(got, next);
        cur = next;
    }
    rt_free(rt);
}

Test(names, reregister_in_down_handler_1_worker, .timeout = 60) { reregister_in_down(1); }
Test(names, reregister_in_down_handler_2_workers, .timeout = 60) { reregister_in_down(2); }

Test(names, cast_and_call_by_name, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid a = start_ok(rt, &probe_ops, NULL);
    cr_assert_eq(gs_register(rt, "by-name", a), GS_OK);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(gs_cast_name(rt, "by-name", P_NOTE, NULL, 0), GS_OK);
    gs_pid arg = GS_NOPID;
    int64_t out[2] = {1, 1};
    size_t len = 0;
    cr_assert_eq(gs_call_name(rt, "by-name", K_PING, &arg, sizeof arg, out, sizeof out, &len, 5000), GS_OK);
    cr_assert_eq(len, sizeof out);
    cr_assert_eq(out[0], 0);
    cr_assert_eq(atomic_load(&g_notes), 10, "casts by name before the call by name were handled");
    /* Exactly as gs_cast / gs_call otherwise. */
    cr_assert_eq(gs_cast_name(rt, "by-name", GS_TAG_DOWN, NULL, 0), GS_EINVAL);
    cr_assert_eq(gs_call_name(rt, "by-name", K_PING, NULL, 4, out, sizeof out, NULL, 5000), GS_EINVAL);
    cr_assert_eq(gs_call_name(rt, "by-name", K_PING, &arg, sizeof arg, out, 4, &len, 5000), GS_EMSGSIZE);
    /* Unknown names. */
    cr_assert_eq(gs_cast_name(rt, "nobody", P_NOTE, NULL, 0), GS_ENOPROC);
    cr_assert_eq(gs_call_name(rt, "nobody", K_PING, &arg, sizeof arg, out, sizeof out, NULL, 5000), GS_ENOPROC);
    /* After the server stopped. */
    stop_ok(rt, a);
    cr_assert_eq(gs_cast_name(rt, "by-name", P_NOTE, NULL, 0), GS_ENOPROC);
    cr_assert_eq(gs_call_name(rt, "by-name", K_PING, &arg, sizeof arg, out, sizeof out, NULL, 5000), GS_ENOPROC);
    rt_free(rt);
}

Test(names, call_name_from_a_callback_path_works, .timeout = 20)
{
    /* gs_call_name / gs_cast_name between threads: a second thread. */
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid a = start_ok(rt, &probe_ops, NULL);
    cr_assert_eq(gs_register(rt, "remote", a), GS_OK);
    int64_t out[2];
    gs_pid arg = GS_NOPID;
    for (int i = 0; i < 100; i++)
        cr_assert_eq(gs_call_name(rt, "remote", K_PING, &arg, sizeof arg, out, sizeof out, NULL, 5000), GS_OK);
    rt_free(rt);
}

Test(names, several_names_for_one_server, .timeout = 20)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    gs_pid a = start_ok(rt, &probe_ops, NULL);
    gs_pid w = start_ok(rt, &probe_ops, NULL);
    const char *names[] = {"n1", "n2", "n3", "n4"};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(gs_register(rt, names[i], a), GS_OK);
    gs_pid got;
    for (int i = 0; i < 4; i++) {
        got = 0;
        cr_assert_eq(gs_whereis(rt, names[i], &got), GS_OK);
        cr_assert_eq(got, a);
    }
    cr_assert_eq(gs_unregister(rt, "n2"), GS_OK);
    cr_assert_eq(gs_whereis(rt, "n2", &got), GS_ENOENT);
    cr_assert_eq(gs_whereis(rt, "n3", &got), GS_OK);
    snprintf(g_watch_name, sizeof g_watch_name, "n4");
    monitor_ok(rt, w, a);
    cast_int(rt, a, P_CRASH, GS_EAGAIN);
    cr_assert(wait_ev(w, GS_TAG_DOWN, 1, 10000));
    ev e;
    cr_assert(ev_find(w, GS_TAG_DOWN, &e));
    cr_assert_eq(e.whereis_rc, GS_ENOENT);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(gs_whereis(rt, names[i], &got), GS_ENOENT, "%s survived its server", names[i]);
    gs_pid b = start_ok(rt, &probe_ops, NULL);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(gs_register(rt, names[i], b), GS_OK);
    rt_free(rt); /* names of live servers at runtime stop: ASan checks they are freed */
}

Test(names, runtimes_have_separate_registries, .timeout = 20)
{
    probe_reset();
    gs_runtime *r1 = rt_new(1);
    gs_runtime *r2 = rt_new(1);
    gs_pid a = start_ok(r1, &probe_ops, NULL);
    gs_pid b = start_ok(r2, &probe_ops, NULL);
    cr_assert_eq(gs_register(r1, "same", a), GS_OK);
    cr_assert_eq(gs_register(r2, "same", b), GS_OK);
    gs_pid got = 0;
    cr_assert_eq(gs_whereis(r1, "same", &got), GS_OK);
    cr_assert_eq(got, a);
    cr_assert_eq(gs_whereis(r2, "same", &got), GS_OK);
    cr_assert_eq(got, b);
    /* A pid of another runtime cannot be registered. */
    cr_assert_eq(gs_register(r1, "foreign", b), GS_ENOPROC);
    rt_free(r1);
    rt_free(r2);
}

/* ---- concurrent lookups while names come and go --------------------- */

#define NNAMES 8
#define NREADERS 4

static gs_runtime *g_crt;
static gs_pid g_owner[NNAMES]; /* name k is only ever registered to g_owner[k] */
static gs_pid g_stable;
static atomic_int g_stop_readers;
static atomic_long g_bad, g_hits, g_misses, g_stable_bad;

static void *reader_thread(void *p)
{
    uint64_t rng = 0x9E3779B97F4A7C15ull * (uint64_t)((intptr_t)p + 1);
    char name[32];
    while (!atomic_load(&g_stop_readers)) {
        int k = (int)(xorshift64(&rng) % NNAMES);
        snprintf(name, sizeof name, "churn-%d", k);
        gs_pid got = 0;
        int rc = gs_whereis(g_crt, name, &got);
        if (rc == GS_OK) {
            atomic_fetch_add(&g_hits, 1);
            if (got != g_owner[k])
                atomic_fetch_add(&g_bad, 1);
        } else if (rc == GS_ENOENT) {
            atomic_fetch_add(&g_misses, 1);
        } else {
            atomic_fetch_add(&g_bad, 1);
        }
        got = 0;
        if (gs_whereis(g_crt, "stable", &got) != GS_OK || got != g_stable)
            atomic_fetch_add(&g_stable_bad, 1);
        if (xorshift64(&rng) % 64 == 0) {
            int64_t out[2];
            gs_pid arg = GS_NOPID;
            if (gs_call_name(g_crt, "stable", K_PING, &arg, sizeof arg, out, sizeof out, NULL, 10000) != GS_OK)
                atomic_fetch_add(&g_stable_bad, 1);
            rc = gs_cast_name(g_crt, name, P_NOTE, NULL, 0);
            if (rc != GS_OK && rc != GS_ENOPROC)
                atomic_fetch_add(&g_bad, 1);
        }
    }
    return NULL;
}

static void concurrent_lookups(unsigned workers)
{
    probe_reset();
    g_crt = rt_new(workers);
    atomic_store(&g_stop_readers, 0);
    atomic_store(&g_bad, 0);
    atomic_store(&g_hits, 0);
    atomic_store(&g_misses, 0);
    atomic_store(&g_stable_bad, 0);
    for (int k = 0; k < NNAMES; k++)
        g_owner[k] = start_ok(g_crt, &probe_ops, NULL);
    g_stable = start_ok(g_crt, &probe_ops, NULL);
    cr_assert_eq(gs_register(g_crt, "stable", g_stable), GS_OK);
    pthread_t th[NREADERS];
    for (int i = 0; i < NREADERS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, reader_thread, (void *)(intptr_t)i), 0);
    bool registered[NNAMES] = {false};
    uint64_t rng = 12345;
    char name[32];
    int wrong = 0;
    /* At least 20,000 changes, and on until the readers have seen both a
     * hit and a miss (on a loaded machine they may start late). */
    int64_t churn_until = now_ms() + 10000;
    for (int i = 0; i < 20000 || ((atomic_load(&g_hits) == 0 || atomic_load(&g_misses) == 0) &&
                                  now_ms() < churn_until);
         i++) {
        int k = (int)(xorshift64(&rng) % NNAMES);
        snprintf(name, sizeof name, "churn-%d", k);
        if (registered[k]) {
            if (gs_unregister(g_crt, name) != GS_OK)
                wrong++;
        } else {
            if (gs_register(g_crt, name, g_owner[k]) != GS_OK)
                wrong++;
        }
        registered[k] = !registered[k];
        /* Our own view is exact. */
        gs_pid got = 0;
        int rc = gs_whereis(g_crt, name, &got);
        if (registered[k] ? (rc != GS_OK || got != g_owner[k]) : rc != GS_ENOENT)
            wrong++;
    }
    atomic_store(&g_stop_readers, 1);
    for (int i = 0; i < NREADERS; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(wrong, 0, "%d register/unregister/whereis results were wrong on the writer", wrong);
    cr_assert_eq(atomic_load(&g_bad), 0, "%ld lookups returned a wrong pid or status", atomic_load(&g_bad));
    cr_assert_eq(atomic_load(&g_stable_bad), 0);
    cr_assert_gt(atomic_load(&g_hits), 0);
    cr_assert_gt(atomic_load(&g_misses), 0);
    /* Stopping owners while readers could still look: names vanish. */
    for (int k = 0; k < NNAMES; k++) {
        stop_ok(g_crt, g_owner[k]);
        snprintf(name, sizeof name, "churn-%d", k);
        gs_pid got;
        cr_assert_eq(gs_whereis(g_crt, name, &got), GS_ENOENT);
    }
    rt_free(g_crt);
}

Test(names, concurrent_whereis_while_registering_1_worker, .timeout = 120) { concurrent_lookups(1); }
Test(names, concurrent_whereis_while_registering_2_workers, .timeout = 120) { concurrent_lookups(2); }

/* Registering races with the server's exit: either the registration
 * fails with GS_ENOPROC, or it succeeded and the exit releases it. */
Test(names, register_racing_with_exit, .timeout = 60)
{
    probe_reset();
    gs_runtime *rt = rt_new(2);
    for (int round = 0; round < 500; round++) {
        gs_pid a = start_ok(rt, &probe_ops, NULL);
        char name[32];
        snprintf(name, sizeof name, "race-%d", round);
        cast_int(rt, a, P_STOP, 0);
        int rc = gs_register(rt, name, a);
        cr_assert(rc == GS_OK || rc == GS_ENOPROC, "round %d: %d", round, rc);
        cr_assert(wait_dead(rt, a, 5000));
        gs_pid got;
        /* The server is gone (casts fail): its name must be too. Allow
         * the exit path a moment to finish after the slot closed. */
        int64_t end = now_ms() + 5000;
        while (gs_whereis(rt, name, &got) == GS_OK && now_ms() < end)
            sleep_ms(1);
        cr_assert_eq(gs_whereis(rt, name, &got), GS_ENOENT, "round %d: a dead server kept its name", round);
    }
    rt_free(rt);
}
