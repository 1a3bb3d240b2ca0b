/* Timers to a registered name: gs_send_after_name looks the name up when
 * the timer fires, not when it is armed (erlang:send_after/3 with an
 * atom), drops the message if nobody holds the name then, is cancelled
 * and read like any timer, and is not tied to the life of a server;
 * gs_send_interval_name does so at every tick and ticks on through the
 * times nobody holds the name. */
#include "common.h"

#include <string.h>

#define MAXREC 256

static timer_record recs[MAXREC];
static atomic_int nrecs;
static pthread_mutex_t recs_lock = PTHREAD_MUTEX_INITIALIZER; /* two collectors may record at once */

static int collector_init(gs_ctx *ctx, void *state, const void *arg)
{
    (void)ctx;
    *(int *)state = *(const int *)arg;
    return GS_OK;
}

static int collector_info(gs_ctx *ctx, void *state, const gs_msg *m)
{
    (void)ctx;
    pthread_mutex_lock(&recs_lock);
    int i = atomic_load(&nrecs);
    if (i < MAXREC) {
        recs[i] = timer_record_of(m, *(int *)state);
        atomic_store(&nrecs, i + 1);
    }
    pthread_mutex_unlock(&recs_lock);
    return GS_OK;
}

static const gs_server_ops collector_ops = {.name = "named-collector",
                                            .state_size = sizeof(int),
                                            .init = collector_init,
                                            .handle_info = collector_info};

static const int ONE = 1, TWO = 2;

static void reset(void)
{
    atomic_store(&nrecs, 0);
    memset(recs, 0, sizeof recs);
}

/* Waits until the runtime holds no timer (fired or cancelled ones freed). */
static bool timers_all_freed(gs_runtime *rt)
{
    gs_runtime_stats st;
    for (int i = 0; i < 2500; i++) {
        cr_assert_eq(gs_runtime_stats_get(rt, &st), GS_OK);
        if (st.timers == 0)
            return true;
        sleep_ms(2);
    }
    return false;
}

/* A runtime with collectors 1 and 2, the first holding `name`. */
static gs_runtime *two_collectors(const char *name, gs_pid *c1, gs_pid *c2)
{
    reset();
    gs_runtime *rt = rt_new(2);
    *c1 = start_ok(rt, &collector_ops, &ONE);
    *c2 = start_ok(rt, &collector_ops, &TWO);
    cr_assert_eq(gs_register(rt, name, *c1), GS_OK);
    return rt;
}

Test(named_timers, delivered_to_whoever_holds_the_name_when_it_fires, .timeout = 20)
{
    gs_pid c1, c2;
    gs_runtime *rt = two_collectors("clock", &c1, &c2);
    int64_t a = 111, b = 222;
    gs_timer ta = 0, tb = 0;
    int64_t t0 = now_ns();
    cr_assert_eq(gs_send_after_name(rt, "clock", 7, &a, sizeof a, 30, &ta), GS_OK);
    cr_assert_eq(gs_send_after_name(rt, "clock", 8, &b, sizeof b, 300, &tb), GS_OK);
    cr_assert(ta != 0 && tb != 0 && ta != tb);
    cr_assert(wait_int_eq(&nrecs, 1, 5000), "the first timer fired");
    cr_assert_eq(recs[0].server, 1);
    cr_assert_eq(recs[0].tag, 7);
    cr_assert_eq(recs[0].value, 111);
    cr_assert_eq(recs[0].sender, GS_NOPID);
    cr_assert_eq(recs[0].timer, ta, "the message names its timer");
    cr_assert_geq(recs[0].at_ns - t0, 30 * 1000000LL, "fired early");
    /* The name moves before the second fires: it goes to the new holder. */
    cr_assert_eq(gs_unregister(rt, "clock"), GS_OK);
    cr_assert_eq(gs_register(rt, "clock", c2), GS_OK);
    cr_assert(wait_int_eq(&nrecs, 2, 5000), "the second timer fired");
    cr_assert_eq(recs[1].server, 2, "looked up when it fired, not when armed");
    cr_assert_eq(recs[1].value, 222);
    cr_assert_eq(recs[1].timer, tb);
    cr_assert_geq(recs[1].at_ns - t0, 300 * 1000000LL, "fired early");
    sleep_ms(100);
    cr_assert_eq(atomic_load(&nrecs), 2, "each delivered once");
    cr_assert_eq(gs_cancel_timer(rt, ta), GS_ENOENT, "cancel after firing");
    rt_free(rt);
}

Test(named_timers, a_name_nobody_holds_when_it_fires_drops_the_message, .timeout = 20)
{
    reset();
    gs_runtime *rt = rt_new(2);
    gs_pid c = start_ok(rt, &collector_ops, &ONE);
    gs_timer t = 0;
    int64_t v = 5;
    cr_assert_eq(gs_send_after_name(rt, "nobody", 3, &v, sizeof v, 10, &t), GS_OK,
                 "not looked up when armed");
    /* Registered after arming, before firing: found. */
    cr_assert_eq(gs_send_after_name(rt, "later", 4, &v, sizeof v, 150, NULL), GS_OK);
    cr_assert_eq(gs_register(rt, "later", c), GS_OK);
    cr_assert(wait_int_eq(&nrecs, 1, 5000));
    cr_assert_eq(recs[0].tag, 4);
    sleep_ms(50);
    cr_assert_eq(atomic_load(&nrecs), 1, "the message to nobody went nowhere");
    cr_assert_eq(gs_cancel_timer(rt, t), GS_ENOENT, "it fired, into the void");
    cr_assert(timers_all_freed(rt), "the dropped timer's record and message were freed");
    rt_free(rt);
}

Test(named_timers, cancelled_before_firing_never_delivered_and_read_like_any_timer, .timeout = 20)
{
    reset();
    gs_runtime *rt = rt_new(2);
    gs_pid c = start_ok(rt, &collector_ops, &ONE);
    cr_assert_eq(gs_register(rt, "svc", c), GS_OK);
    gs_timer t[20];
    for (int64_t i = 0; i < 20; i++)
        cr_assert_eq(gs_send_after_name(rt, "svc", 9, &i, sizeof i, 150, &t[i]), GS_OK);
    int left = -1;
    cr_assert_eq(gs_read_timer(rt, t[0], &left), GS_OK);
    cr_assert(left > 0 && left <= 150, "%d ms left", left);
    for (int i = 0; i < 20; i += 2)
        cr_assert_eq(gs_cancel_timer(rt, t[i]), GS_OK);
    for (int i = 0; i < 20; i += 2) {
        cr_assert_eq(gs_cancel_timer(rt, t[i]), GS_ENOENT, "second cancel");
        cr_assert_eq(gs_read_timer(rt, t[i], &left), GS_ENOENT);
    }
    cr_assert(wait_int_eq(&nrecs, 10, 5000));
    sleep_ms(100);
    cr_assert_eq(atomic_load(&nrecs), 10);
    for (int k = 0; k < 10; k++)
        cr_assert_eq(recs[k].value % 2, 1, "cancelled timer %lld was delivered", (long long)recs[k].value);
    cr_assert(timers_all_freed(rt));
    rt_free(rt);
}

Test(named_timers, the_holders_exit_does_not_cancel_it, .timeout = 20)
{
    gs_pid c1, c2;
    gs_runtime *rt = two_collectors("job", &c1, &c2);
    gs_timer t = 0;
    int64_t v = 77;
    cr_assert_eq(gs_send_after_name(rt, "job", 5, &v, sizeof v, 200, &t), GS_OK);
    stop_ok(rt, c1); /* its name goes with it; the timer stays */
    int left = -1;
    cr_assert_eq(gs_read_timer(rt, t, &left), GS_OK, "still pending after the holder stopped");
    cr_assert_eq(gs_register(rt, "job", c2), GS_OK);
    cr_assert(wait_int_eq(&nrecs, 1, 5000));
    cr_assert_eq(recs[0].server, 2);
    cr_assert_eq(recs[0].value, 77);
    rt_free(rt);
}

Test(named_timers, pending_named_timers_are_freed_by_runtime_stop, .timeout = 20)
{
    gs_runtime *rt = rt_new(1);
    static unsigned char big[300]; /* a message past the inline size, as every named timer's */
    for (int i = 0; i < 500; i++) {
        cr_assert_eq(gs_send_after_name(rt, "far", 2, "x", 1, 60000, NULL), GS_OK);
        cr_assert_eq(gs_send_after_name(rt, "far", 2, big, sizeof big, 1, NULL), GS_OK);
    }
    rt_free(rt); /* LeakSanitizer fails the suite if a name or message is left */
}

/* Counts the ticks (tag 6) each collector got so far. */
static void ticks_by_server(int *one, int *two)
{
    pthread_mutex_lock(&recs_lock);
    *one = *two = 0;
    for (int i = 0; i < atomic_load(&nrecs); i++)
        if (recs[i].tag == 6) {
            *one += recs[i].server == 1;
            *two += recs[i].server == 2;
        }
    pthread_mutex_unlock(&recs_lock);
}

Test(named_timers, an_interval_follows_the_name_and_ticks_on_while_nobody_holds_it, .timeout = 30)
{
    gs_pid c1, c2;
    gs_runtime *rt = two_collectors("beat", &c1, &c2);
    gs_timer t = 0;
    int64_t v = 9;
    cr_assert_eq(gs_send_interval_name(rt, "beat", 6, &v, sizeof v, 10, &t), GS_OK);
    cr_assert(wait_int_eq(&nrecs, 3, 5000), "ticks to the first holder");
    /* Nobody holds the name: ticks are dropped, the timer runs on. */
    cr_assert_eq(gs_unregister(rt, "beat"), GS_OK);
    sleep_ms(20); /* a tick already queued to c1 may still land */
    int one_before, two_before;
    ticks_by_server(&one_before, &two_before);
    sleep_ms(60);
    int one, two;
    ticks_by_server(&one, &two);
    cr_assert_eq(one, one_before, "a tick reached the old holder after it lost the name");
    cr_assert_eq(two, 0);
    int left = -1;
    cr_assert_eq(gs_read_timer(rt, t, &left), GS_OK, "still ticking with nobody to tick to");
    cr_assert_leq(left, 10);
    /* A new holder gets the ticks from then on. */
    cr_assert_eq(gs_register(rt, "beat", c2), GS_OK);
    int64_t until = now_ns() + 5000 * 1000000LL;
    do {
        sleep_ms(5);
        ticks_by_server(&one, &two);
    } while (two < 3 && now_ns() < until);
    cr_assert_geq(two, 3, "ticks to the second holder");
    for (int i = 0; i < atomic_load(&nrecs); i++)
        cr_assert(recs[i].tag == 6 && recs[i].value == 9 && recs[i].timer == t && recs[i].sender == GS_NOPID);
    /* Cancelled: no tick afterwards (the holder does not cancel it here,
     * so one already queued may still land: allow for that). */
    cr_assert_eq(gs_cancel_timer(rt, t), GS_OK);
    sleep_ms(20);
    int settled = atomic_load(&nrecs);
    sleep_ms(60);
    cr_assert_eq(atomic_load(&nrecs), settled, "ticks after the cancel");
    cr_assert_eq(gs_cancel_timer(rt, t), GS_ENOENT);
    cr_assert(timers_all_freed(rt));
    rt_free(rt);
}

Test(named_timers, a_running_named_interval_is_freed_by_runtime_stop, .timeout = 20)
{
    gs_runtime *rt = rt_new(1);
    gs_pid c = start_ok(rt, &collector_ops, &ONE);
    cr_assert_eq(gs_register(rt, "beat", c), GS_OK);
    cr_assert_eq(gs_send_interval_name(rt, "beat", 6, "x", 1, 1, NULL), GS_OK);
    cr_assert_eq(gs_send_interval_name(rt, "nobody", 6, "x", 1, 1, NULL), GS_OK);
    sleep_ms(30);
    rt_free(rt); /* LeakSanitizer fails the suite if a template or name is left */
}

Test(named_timers, bad_arguments, .timeout = 10)
{
    gs_runtime *rt = rt_new(1);
    char long_name[GS_NAME_MAX + 2];
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    int64_t v = 1;
    gs_timer t = 0;
    cr_assert_eq(gs_send_after_name(NULL, "x", 1, &v, sizeof v, 10, &t), GS_EINVAL);
    cr_assert_eq(gs_send_after_name(rt, NULL, 1, &v, sizeof v, 10, &t), GS_EINVAL);
    cr_assert_eq(gs_send_after_name(rt, "", 1, &v, sizeof v, 10, &t), GS_EINVAL);
    cr_assert_eq(gs_send_after_name(rt, long_name, 1, &v, sizeof v, 10, &t), GS_EINVAL);
    long_name[GS_NAME_MAX] = '\0'; /* exactly GS_NAME_MAX: fine */
    cr_assert_eq(gs_send_after_name(rt, long_name, 1, &v, sizeof v, 10, NULL), GS_OK);
    cr_assert_eq(gs_send_after_name(rt, "x", 1, NULL, 8, 10, &t), GS_EINVAL);
    cr_assert_eq(gs_send_after_name(rt, "x", 1, &v, sizeof v, -1, &t), GS_EINVAL);
    cr_assert_eq(gs_send_after_name(rt, "x", 1, &v, sizeof v, GS_TIMEOUT_MAX_MS + 1, &t), GS_EINVAL);
    cr_assert_eq(gs_send_after_name(rt, "x", GS_TAG_TIMEOUT, &v, sizeof v, 10, &t), GS_EINVAL,
                 "a runtime tag");
    cr_assert_eq(gs_send_after_name(rt, "x", 1, &v, (size_t)GS_MSG_MAX + 1, 10, &t), GS_EMSGSIZE);
    cr_assert_eq(gs_send_interval_name(rt, "x", 1, &v, sizeof v, 0, &t), GS_EINVAL, "an interval of 0 ms");
    cr_assert_eq(gs_send_interval_name(rt, "", 1, &v, sizeof v, 10, &t), GS_EINVAL);
    cr_assert_eq(gs_send_interval_name(NULL, "x", 1, &v, sizeof v, 10, &t), GS_EINVAL);
    rt_free(rt);
}
