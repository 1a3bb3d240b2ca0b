/* Fault injection: a scenario (start, cast, call, timer, monitor, stop,
 * runtime stop) is run once per allocation it makes, with exactly that
 * allocation failing, and every later one too. Each API call must then
 * succeed or return GS_ENOMEM (or a consequence the header documents),
 * nothing may be delivered by halves (a call sees exactly the casts
 * accepted before it), terminate runs exactly once for every server that
 * started, and AddressSanitizer's leak check must stay clean. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "runtime/alloc.h"
#include <genserver.h>

enum { INCR = 1, GET = 2 };

static atomic_int terminated, inits;

static int f_init(gs_ctx *ctx, void *state, const void *arg)
{
    atomic_fetch_add(&inits, 1);
    return GS_OK;
}

static int f_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    ++*(int64_t *)state;
    return GS_OK;
}

static int f_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    return gs_reply(gs_ctx_runtime(ctx), from, state, sizeof(int64_t));
}

static int f_info(gs_ctx *ctx, void *state, const gs_msg *m)
{
    return GS_OK;
}

static void f_terminate(gs_ctx *ctx, void *state, int reason)
{
    atomic_fetch_add(&terminated, 1);
}

static const gs_server_ops f_ops = {.name = "fault-target", .state_size = sizeof(int64_t), .init = f_init,
                                    .handle_cast = f_cast, .handle_call = f_call, .handle_info = f_info,
                                    .terminate = f_terminate};

/* Outcome of one run, checked on the test thread. */
typedef struct run_result {
    int bad_rc;       /* an API call returned a code outside its allowed set */
    char what[160];
    long allocations; /* attempted during the run */
} run_result;

#define ALLOWED(rc, ...)                                                                            \
    do {                                                                                            \
        int _rc = (rc), _ok = 0;                                                                    \
        int _set[] = {__VA_ARGS__};                                                                 \
        for (size_t _i = 0; _i < sizeof _set / sizeof _set[0]; _i++)                                \
            _ok |= _rc == _set[_i];                                                                 \
        if (!_ok && !r->bad_rc) {                                                                   \
            r->bad_rc = 1;                                                                          \
            snprintf(r->what, sizeof r->what, "line %d: %s gave %d (%s)", __LINE__, #rc, _rc,        \
                     gs_strerror(_rc));                                                             \
        }                                                                                           \
    } while (0)

static void scenario(long fail_after, run_result *r)
{
    memset(r, 0, sizeof *r);
    atomic_store(&terminated, 0);
    atomic_store(&inits, 0);
    alloc_fail_after(fail_after);
    gs_runtime *rt;
    gs_runtime_opts opts = {.workers = 2};
    int rc = gs_runtime_start(&rt, &opts);
    ALLOWED(rc, GS_OK, GS_ENOMEM);
    if (rc != GS_OK) {
        r->allocations = alloc_attempts();
        alloc_fail_after(-1);
        return;
    }
    gs_pid s = GS_NOPID, w = GS_NOPID;
    rc = gs_start(rt, &f_ops, NULL, &s);
    ALLOWED(rc, GS_OK, GS_ENOMEM);
    int started = rc == GS_OK;
    rc = gs_start(rt, &f_ops, NULL, &w);
    ALLOWED(rc, GS_OK, GS_ENOMEM);
    started += rc == GS_OK;
    if (s != GS_NOPID) {
        int64_t accepted = 0;
        for (int k = 0; k < 10; k++) {
            rc = gs_cast(rt, s, INCR, NULL, 0);
            ALLOWED(rc, GS_OK, GS_ENOMEM);
            accepted += rc == GS_OK;
        }
        int64_t seen = -1;
        rc = gs_call(rt, s, GET, NULL, 0, &seen, sizeof seen, NULL, 10000);
        ALLOWED(rc, GS_OK, GS_ENOMEM);
        if (rc == GS_OK && seen != accepted && !r->bad_rc) {
            r->bad_rc = 1;
            snprintf(r->what, sizeof r->what, "call saw %lld casts, %lld were accepted", (long long)seen,
                     (long long)accepted);
        }
        gs_timer t = 0;
        rc = gs_send_after(rt, s, 7, "tick", 4, 1, NULL);
        ALLOWED(rc, GS_OK, GS_ENOMEM, GS_EAGAIN);
        rc = gs_send_after(rt, s, 7, "tock", 4, 60000, &t);
        ALLOWED(rc, GS_OK, GS_ENOMEM, GS_EAGAIN);
        if (rc == GS_OK)
            ALLOWED(gs_cancel_timer(rt, t), GS_OK);
        /* Timers to a name: the name's copy and the message are made when
         * armed; a failure leaves nothing behind (LeakSanitizer). */
        rc = gs_register(rt, "faulty", s);
        ALLOWED(rc, GS_OK, GS_ENOMEM);
        rc = gs_send_after_name(rt, "faulty", 7, "tick", 4, 1, NULL);
        ALLOWED(rc, GS_OK, GS_ENOMEM, GS_EAGAIN);
        rc = gs_send_after_name(rt, "faulty", 7, "tock", 4, 60000, &t);
        ALLOWED(rc, GS_OK, GS_ENOMEM, GS_EAGAIN);
        if (rc == GS_OK)
            ALLOWED(gs_cancel_timer(rt, t), GS_OK);
        rc = gs_send_interval_name(rt, "faulty", 7, "beat", 4, 1, &t);
        ALLOWED(rc, GS_OK, GS_ENOMEM, GS_EAGAIN);
        if (rc == GS_OK)
            ALLOWED(gs_cancel_timer(rt, t), GS_OK);
        if (w != GS_NOPID) {
            gs_ref ref;
            rc = gs_monitor(rt, w, s, &ref);
            ALLOWED(rc, GS_OK, GS_ENOMEM);
        }
        rc = gs_stop(rt, s, GS_NORMAL, 10000);
        ALLOWED(rc, GS_OK, GS_ENOMEM);
    }
    rc = gs_runtime_stop(rt);
    ALLOWED(rc, GS_OK);
    r->allocations = alloc_attempts();
    alloc_fail_after(-1);
    if (atomic_load(&terminated) != started && !r->bad_rc) {
        r->bad_rc = 1;
        snprintf(r->what, sizeof r->what, "%d servers started, %d terminated", started, atomic_load(&terminated));
    }
}

Test(faults, every_allocation_of_a_scenario_may_fail, .timeout = 300)
{
    run_result clean;
    scenario(-1, &clean);
    cr_assert_eq(clean.bad_rc, 0, "clean run: %s", clean.what);
    /* alloc_attempts counts only while injection is on: measure with a
     * failure point beyond the end. */
    run_result probe;
    scenario(1000000, &probe);
    cr_assert_eq(probe.bad_rc, 0, "probe run: %s", probe.what);
    long total = probe.allocations;
    cr_assert_gt(total, 10, "the scenario allocates only %ld times?", total);
    for (long n = 0; n <= total + 2; n++) {
        run_result r;
        scenario(n, &r);
        cr_assert_eq(r.bad_rc, 0, "allocation %ld of %ld failing: %s", n, total, r.what);
    }
    printf("faults: swept %ld allocation points\n", total + 3);
}

Test(faults, runtime_stop_needs_no_memory, .timeout = 60)
{
    atomic_store(&terminated, 0);
    gs_runtime *rt;
    gs_runtime_opts opts = {.workers = 2};
    cr_assert_eq(gs_runtime_start(&rt, &opts), GS_OK);
    enum { N = 100 };
    for (int i = 0; i < N; i++) {
        gs_pid p;
        cr_assert_eq(gs_start(rt, &f_ops, NULL, &p), GS_OK);
        for (int k = 0; k < 3; k++)
            cr_assert_eq(gs_cast(rt, p, INCR, NULL, 0), GS_OK);
    }
    alloc_fail_after(0); /* from here on every allocation fails */
    cr_assert_eq(gs_runtime_stop(rt), GS_OK);
    alloc_fail_after(-1);
    cr_assert_eq(atomic_load(&terminated), N, "terminate ran for %d of %d", atomic_load(&terminated), N);
}
