/* Asynchronous requests at their edges: a timeout of 0 from a callback
 * (the timer may complete the request before gs_send_request returns),
 * requests nobody collects (freed by the stop), and outcomes sent to a
 * requester whose mailbox is bounded (runtime messages: never refused). */
#include "common.h"

enum { HOLD = 1, ECHO = 2, BURST = 3 };

/* Never answers: every request to it ends by its deadline. */
static int mute_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    return GS_NOREPLY;
}

static int echo_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    if (m->tag == HOLD)
        return GS_NOREPLY;
    return gs_reply(gs_ctx_runtime(ctx), from, m->data, m->len);
}

static const gs_server_ops mute_ops = {.name = "mute", .handle_call = mute_call};
static const gs_server_ops echo_ops = {.name = "echo", .handle_call = echo_call};

/* The requester: a BURST cast (target pid, count, timeout) sends that many
 * requests at once; every outcome is counted. */
typedef struct burst {
    gs_pid to;
    int count;
    int timeout_ms;
} burst;

static atomic_int sent_ok, refused, other_rc, outcomes_got;

static int requester_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    burst b;
    memcpy(&b, m->data, sizeof b);
    for (int i = 0; i < b.count; i++) {
        gs_request r;
        int rc = gs_send_request(gs_ctx_runtime(ctx), b.to, ECHO, &i, sizeof i, b.timeout_ms, &r);
        if (rc == GS_OK)
            atomic_fetch_add(&sent_ok, 1);
        else if (rc == GS_ENOPROC)
            atomic_fetch_add(&refused, 1);
        else
            atomic_fetch_add(&other_rc, 1);
    }
    return GS_OK;
}

static int requester_info(gs_ctx *ctx, void *state, const gs_msg *m)
{
    if (m->tag == GS_TAG_REPLY || m->tag == GS_TAG_REPLY_TIMEOUT)
        atomic_fetch_add(&outcomes_got, 1);
    return GS_OK;
}

static const gs_server_ops requester_ops = {
    .name = "requester", .handle_cast = requester_cast, .handle_info = requester_info};

static void reset(void)
{
    atomic_store(&sent_ok, 0);
    atomic_store(&refused, 0);
    atomic_store(&other_rc, 0);
    atomic_store(&outcomes_got, 0);
}

/* Sends bursts until `seconds` pass; then every request made must have had
 * exactly one outcome, and every refused one none. */
static void bursts(gs_runtime *rt, gs_pid requester, gs_pid to, int seconds)
{
    int64_t until = now_ns() + (int64_t)seconds * 1000000000;
    burst b = {to, 200, 0};
    while (now_ns() < until) {
        int before = atomic_load(&sent_ok) + atomic_load(&refused) + atomic_load(&other_rc);
        cr_assert_eq(gs_cast(rt, requester, BURST, &b, sizeof b), GS_OK);
        int64_t wait_until = now_ns() + 5000000000LL;
        while (atomic_load(&sent_ok) + atomic_load(&refused) + atomic_load(&other_rc) < before + b.count &&
               now_ns() < wait_until)
            sleep_ms(1);
    }
    cr_assert_eq(atomic_load(&other_rc), 0);
    cr_assert(wait_int_eq(&outcomes_got, atomic_load(&sent_ok), 5000), "%d outcomes for %d requests made",
              atomic_load(&outcomes_got), atomic_load(&sent_ok));
    sleep_ms(50);
    cr_assert_eq(atomic_load(&outcomes_got), atomic_load(&sent_ok), "an outcome for a refused request");
}

/* Under AddressSanitizer, the timer completing a request (and freeing it)
 * while gs_send_request still used it showed within seconds. */
Test(request_edges, zero_timeouts_from_a_callback_to_a_live_server, .timeout = 60)
{
    reset();
    gs_runtime *rt = rt_new(2);
    gs_pid mute = start_ok(rt, &mute_ops, NULL);
    gs_pid req = start_ok(rt, &requester_ops, NULL);
    bursts(rt, req, mute, 2);
    cr_assert_eq(atomic_load(&refused), 0);
    rt_free(rt);
}

Test(request_edges, zero_timeouts_from_a_callback_to_a_dead_server, .timeout = 60)
{
    reset();
    gs_runtime *rt = rt_new(2);
    gs_pid gone = start_ok(rt, &mute_ops, NULL);
    stop_ok(rt, gone);
    gs_pid req = start_ok(rt, &requester_ops, NULL);
    bursts(rt, req, gone, 2);
    rt_free(rt);
}

/* Requests whose outcome nobody collects: an outside thread's (answered,
 * pending, past their deadline) and a server's whose deadline is still to
 * come. The stop frees them (LeakSanitizer checks). */
Test(request_edges, requests_nobody_collects_are_freed_by_the_stop, .timeout = 30)
{
    reset();
    gs_runtime *rt = rt_new(2);
    gs_pid echo = start_ok(rt, &echo_ops, NULL);
    gs_pid mute = start_ok(rt, &mute_ops, NULL);
    gs_request r;
    int v = 7;
    cr_assert_eq(gs_send_request(rt, echo, ECHO, &v, sizeof v, 5000, &r), GS_OK);  /* answered */
    cr_assert_eq(gs_send_request(rt, echo, HOLD, &v, sizeof v, 60000, &r), GS_OK); /* pending */
    cr_assert_eq(gs_send_request(rt, mute, HOLD, &v, sizeof v, 1, &r), GS_OK);     /* past its deadline */
    gs_pid req = start_ok(rt, &requester_ops, NULL);
    burst b = {mute, 3, 60000};
    cr_assert_eq(gs_cast(rt, req, BURST, &b, sizeof b), GS_OK);
    cr_assert(wait_int_eq(&sent_ok, 3, 5000));
    sleep_ms(20);
    rt_free(rt);
}

/* A request's outcome is a runtime message: a bounded mailbox never
 * refuses or drops it, whatever its policy. */
static void outcomes_through_a_bound(int overflow)
{
    reset();
    gs_runtime *rt = rt_new(2);
    gs_pid echo = start_ok(rt, &echo_ops, NULL);
    gs_start_opts o = {.mailbox_max = 2, .overflow = overflow};
    gs_pid req;
    cr_assert_eq(gs_start_with(rt, &requester_ops, NULL, &o, &req), GS_OK);
    burst b = {echo, 10, 5000};
    cr_assert_eq(gs_cast(rt, req, BURST, &b, sizeof b), GS_OK);
    cr_assert(wait_int_eq(&outcomes_got, 10, 5000), "%d of 10 outcomes arrived", atomic_load(&outcomes_got));
    gs_server_info info;
    cr_assert_eq(gs_server_info_get(rt, req, &info), GS_OK);
    cr_assert_eq(info.refused + info.dropped, 0);
    rt_free(rt);
}

Test(request_edges, outcomes_pass_a_rejecting_bound, .timeout = 30)
{
    outcomes_through_a_bound(GS_OVERFLOW_REJECT);
}
Test(request_edges, outcomes_pass_a_dropping_bound, .timeout = 30)
{
    outcomes_through_a_bound(GS_OVERFLOW_DROP_OLDEST);
}

/* A requester that exits takes its open requests with it: their slots and
 * deadline timers go at once, and the callee's late reply finds nobody
 * (GS_ENOENT). They used to be held until the deadline (here a minute;
 * up to GS_TIMEOUT_MAX_MS), or until the callee answered or exited. The
 * keeper keeps every `from` and answers them all on KEEPER_ANSWER. */
enum { KEEPER_ANSWER = 9 };
#define KEPT_MAX 256
typedef struct keeper {
    gs_from kept[KEPT_MAX];
    int n;
} keeper;
static atomic_int keeper_enoent, keeper_answered;

static int keeper_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    keeper *k = state;
    if (k->n < KEPT_MAX)
        k->kept[k->n++] = from;
    return GS_NOREPLY;
}

static int keeper_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    keeper *k = state;
    for (int i = 0; i < k->n; i++)
        if (gs_reply(gs_ctx_runtime(ctx), k->kept[i], NULL, 0) == GS_ENOENT)
            atomic_fetch_add(&keeper_enoent, 1);
    atomic_store(&keeper_answered, 1);
    return GS_OK;
}

static const gs_server_ops keeper_ops = {
    .name = "keeper", .state_size = sizeof(keeper), .handle_call = keeper_call, .handle_cast = keeper_cast};

static const gs_server_ops nobody_ops = {.name = "nobody"};


static void requests_end_with_requester(bool kill)
{
    reset();
    atomic_store(&keeper_enoent, 0);
    atomic_store(&keeper_answered, 0);
    gs_runtime *rt = rt_new(2);
    gs_pid keeper_pid = start_ok(rt, &keeper_ops, NULL);
    gs_pid poke = start_ok(rt, &nobody_ops, NULL);
    gs_pid req = start_ok(rt, &requester_ops, NULL);
    uint64_t base = timers_held_after_a_wake(rt, poke);
    burst b = {keeper_pid, 100, 60000};
    cr_assert_eq(gs_cast(rt, req, BURST, &b, sizeof b), GS_OK);
    cr_assert(wait_int_eq(&sent_ok, 100, 5000), "%d requests sent", atomic_load(&sent_ok));
    uint64_t held = base;
    for (int i = 0; i < 100 && (held = timers_held_after_a_wake(rt, poke)) < base + 64; i++)
        ;
    cr_assert_geq(held, base + 64, "the requests' timeouts are not in the wheel (%llu held)",
                  (unsigned long long)held);
    if (kill)
        cr_assert_eq(gs_kill(rt, req), GS_OK);
    else
        stop_ok(rt, req);
    for (int i = 0; i < 100 && (held = timers_held_after_a_wake(rt, poke)) > base; i++)
        ;
    cr_assert_eq(held, base, "%llu timer records still held after the requester exited",
                 (unsigned long long)(held - base));
    cr_assert_eq(gs_cast(rt, keeper_pid, KEEPER_ANSWER, NULL, 0), GS_OK);
    cr_assert(wait_int_eq(&keeper_answered, 1, 5000));
    cr_assert_eq(atomic_load(&keeper_enoent), 100, "%d of 100 late replies found nobody",
                 atomic_load(&keeper_enoent));
    cr_assert_eq(atomic_load(&outcomes_got), 0);
    rt_free(rt);
}

Test(request_edges, a_stopped_requester_ends_its_open_requests, .timeout = 30)
{
    requests_end_with_requester(false);
}

Test(request_edges, a_killed_requester_ends_its_open_requests, .timeout = 30)
{
    requests_end_with_requester(true);
}
