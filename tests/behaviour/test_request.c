/* Asynchronous requests: gs_send_request and gs_wait_request. */
#include "common.h"

enum { ECHO = 1, HOLD = 2, RELEASE = 3, ASK = 4, ASK_HELD = 5, CRASH = 6, ASK_HELD_LONG = 7 };

#define MAXHELD 64
typedef struct echo_state {
    gs_from held[MAXHELD];
    int n;
} echo_state;

static atomic_int late_rc = 1;

static int echo_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    echo_state *s = state;
    if (m->tag == ECHO)
        return gs_reply(gs_ctx_runtime(ctx), from, m->data, m->len);
    if (s->n < MAXHELD)
        s->held[s->n++] = from;
    return GS_NOREPLY;
}

static int echo_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    echo_state *s = state;
    if (m->tag == CRASH)
        return GS_EAGAIN;
    for (int i = 0; i < s->n; i++)
        atomic_store(&late_rc, gs_reply(gs_ctx_runtime(ctx), s->held[i], "late", 4));
    s->n = 0;
    return GS_OK;
}

static const gs_server_ops echo_ops = {
    .name = "echo", .state_size = sizeof(echo_state), .handle_call = echo_call, .handle_cast = echo_cast};

Test(request, outside_thread_sends_and_waits, .timeout = 10)
{
    gs_runtime *rt = rt_new(2);
    gs_pid e = start_ok(rt, &echo_ops, NULL);
    gs_request r = 0;
    cr_assert_eq(gs_send_request(rt, e, ECHO, "hello", 5, 5000, &r), GS_OK);
    cr_assert_neq(r, 0);
    char buf[16] = {0};
    size_t len = 0;
    cr_assert_eq(gs_wait_request(rt, r, buf, sizeof buf, &len, 5000), GS_OK);
    cr_assert_eq(len, 5);
    cr_assert_eq(memcmp(buf, "hello", 5), 0);
    cr_assert_eq(gs_wait_request(rt, r, buf, sizeof buf, &len, 10), GS_ENOENT, "the id is spent");
    /* several in flight at once, collected in any order */
    gs_request rs[10];
    for (int64_t i = 0; i < 10; i++)
        cr_assert_eq(gs_send_request(rt, e, ECHO, &i, sizeof i, 5000, &rs[i]), GS_OK);
    for (int64_t i = 9; i >= 0; i--) {
        int64_t v = -1;
        cr_assert_eq(gs_wait_request(rt, rs[i], &v, sizeof v, NULL, 5000), GS_OK);
        cr_assert_eq(v, i);
    }
    rt_free(rt);
}

Test(request, wait_timeout_leaves_the_request_pending, .timeout = 10)
{
    gs_runtime *rt = rt_new(2);
    gs_pid e = start_ok(rt, &echo_ops, NULL);
    gs_request r;
    cr_assert_eq(gs_send_request(rt, e, HOLD, NULL, 0, 10000, &r), GS_OK);
    char buf[8];
    int64_t t0 = now_ns();
    cr_assert_eq(gs_wait_request(rt, r, buf, sizeof buf, NULL, 50), GS_EAGAIN);
    cr_assert_geq(now_ns() - t0, 50 * 1000000LL);
    cr_assert_eq(gs_cast(rt, e, RELEASE, NULL, 0), GS_OK);
    size_t len = 0;
    cr_assert_eq(gs_wait_request(rt, r, buf, sizeof buf, &len, 5000), GS_OK);
    cr_assert_eq(len, 4);
    cr_assert_eq(memcmp(buf, "late", 4), 0);
    rt_free(rt);
}

Test(request, request_deadline_gives_etimedout_and_drops_the_late_reply, .timeout = 10)
{
    atomic_store(&late_rc, 1);
    gs_runtime *rt = rt_new(2);
    gs_pid e = start_ok(rt, &echo_ops, NULL);
    gs_request r;
    int64_t t0 = now_ns();
    cr_assert_eq(gs_send_request(rt, e, HOLD, NULL, 0, 50, &r), GS_OK);
    char buf[8];
    cr_assert_eq(gs_wait_request(rt, r, buf, sizeof buf, NULL, GS_INFINITY), GS_ETIMEDOUT);
    cr_assert_geq(now_ns() - t0, 50 * 1000000LL);
    cr_assert_eq(gs_cast(rt, e, RELEASE, NULL, 0), GS_OK);
    int64_t v = 0, in = 3;
    cr_assert_eq(gs_call(rt, e, ECHO, &in, sizeof in, &v, sizeof v, NULL, 5000), GS_OK);
    cr_assert_eq(atomic_load(&late_rc), GS_ENOENT, "the late reply reached somebody");
    rt_free(rt);
}

/* ---- from a callback: the outcome comes to handle_info --------------- */

typedef struct outcome {
    uint32_t tag;
    gs_request req;
    int status;
    char bytes[16];
    size_t nbytes;
} outcome;

static outcome outcomes[64];
static atomic_int noutcomes;
static _Atomic gs_request sent_req;
static atomic_int send_rc = 1;
static _Atomic gs_pid target;

static int asker_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    gs_request r = 0;
    int rc = gs_send_request(gs_ctx_runtime(ctx), atomic_load(&target), m->tag == ASK ? ECHO : HOLD, "ping", 4,
                             m->tag == ASK ? 5000 : m->tag == ASK_HELD_LONG ? 1000 : 50, &r);
    atomic_store(&sent_req, r);
    atomic_store(&send_rc, rc);
    return GS_OK;
}

static int asker_info(gs_ctx *ctx, void *state, const gs_msg *m)
{
    if (m->tag != GS_TAG_REPLY && m->tag != GS_TAG_REPLY_TIMEOUT)
        return GS_OK;
    int i = atomic_load(&noutcomes);
    if (i >= 64)
        return GS_OK;
    const gs_request_reply *h = m->data;
    outcomes[i].tag = m->tag;
    outcomes[i].req = h->req;
    outcomes[i].status = h->status;
    outcomes[i].nbytes = m->len - sizeof *h;
    memcpy(outcomes[i].bytes, (const char *)m->data + sizeof *h,
           outcomes[i].nbytes < 16 ? outcomes[i].nbytes : 16);
    atomic_store(&noutcomes, i + 1);
    return GS_OK;
}

static const gs_server_ops asker_ops = {.name = "asker", .handle_cast = asker_cast, .handle_info = asker_info};

static void reset_outcomes(void)
{
    atomic_store(&noutcomes, 0);
    atomic_store(&send_rc, 1);
    atomic_store(&late_rc, 1);
    memset(outcomes, 0, sizeof outcomes);
}

/* A runtime with an echo server and an asker aimed at it. */
static gs_runtime *start_asker(gs_pid *echo, gs_pid *asker)
{
    reset_outcomes();
    gs_runtime *rt = rt_new(2);
    *echo = start_ok(rt, &echo_ops, NULL);
    atomic_store(&target, *echo);
    *asker = start_ok(rt, &asker_ops, NULL);
    return rt;
}

Test(request, server_gets_the_reply_in_handle_info, .timeout = 10)
{
    gs_pid e, a;
    gs_runtime *rt = start_asker(&e, &a);
    cr_assert_eq(gs_cast(rt, a, ASK, NULL, 0), GS_OK);
    cr_assert(wait_int_eq(&noutcomes, 1, 5000));
    cr_assert_eq(atomic_load(&send_rc), GS_OK);
    cr_assert_eq(outcomes[0].tag, GS_TAG_REPLY);
    cr_assert_eq(outcomes[0].req, atomic_load(&sent_req));
    cr_assert_eq(outcomes[0].status, GS_OK);
    cr_assert_eq(outcomes[0].nbytes, 4);
    cr_assert_eq(memcmp(outcomes[0].bytes, "ping", 4), 0);
    /* an outside thread cannot wait on a server's request */
    cr_assert_eq(gs_wait_request(rt, atomic_load(&sent_req), NULL, 0, NULL, 10), GS_ENOENT);
    rt_free(rt);
}

Test(request, server_gets_a_timeout_and_never_the_late_reply, .timeout = 10)
{
    gs_pid e, a;
    gs_runtime *rt = start_asker(&e, &a);
    cr_assert_eq(gs_cast(rt, a, ASK_HELD, NULL, 0), GS_OK);
    cr_assert(wait_int_eq(&noutcomes, 1, 5000));
    cr_assert_eq(outcomes[0].tag, GS_TAG_REPLY_TIMEOUT);
    cr_assert_eq(outcomes[0].req, atomic_load(&sent_req));
    cr_assert_eq(outcomes[0].status, GS_ETIMEDOUT);
    cr_assert_eq(gs_cast(rt, e, RELEASE, NULL, 0), GS_OK);
    sleep_ms(100);
    cr_assert_eq(atomic_load(&noutcomes), 1, "both a timeout and a reply");
    cr_assert_eq(atomic_load(&late_rc), GS_ENOENT);
    rt_free(rt);
}

Test(request, callee_crash_is_an_outcome, .timeout = 10)
{
    gs_pid e, a;
    gs_runtime *rt = start_asker(&e, &a);
    cr_assert_eq(gs_cast(rt, a, ASK_HELD, NULL, 0), GS_OK);
    sleep_ms(10);
    cr_assert_eq(gs_cast(rt, e, CRASH, NULL, 0), GS_OK);
    cr_assert(wait_int_eq(&noutcomes, 1, 5000));
    cr_assert_eq(outcomes[0].tag, GS_TAG_REPLY);
    cr_assert_eq(outcomes[0].status, GS_ENOPROC);
    sleep_ms(100);
    cr_assert_eq(atomic_load(&noutcomes), 1);
    rt_free(rt);
}

/* A request's timeout (from a callback) is a timer of the runtime's own,
 * whose handle looks like any other (and, for the first ones, like a pid).
 * No value a user passes to gs_cancel_timer or gs_read_timer may reach it:
 * every handle near the pids' values is tried while it is pending. */
Test(request, no_made_up_timer_handle_reaches_a_request_timeout, .timeout = 20)
{
    gs_pid e, a;
    gs_runtime *rt = start_asker(&e, &a);
    atomic_store(&send_rc, 1);
    cr_assert_eq(gs_cast(rt, a, ASK_HELD_LONG, NULL, 0), GS_OK); /* times out in 1,000 ms */
    cr_assert(wait_int_eq(&send_rc, GS_OK, 5000));
    int read_ok = 0, cancel_ok = 0;
    for (uint64_t gen = 0; gen < 4; gen++) {
        for (int64_t k = -2048; k < 2048; k++) {
            gs_timer h = gen << 32 | (uint32_t)((uint32_t)e + k); /* the pid's tag and slot bits, and near */
            int ms = 0;
            read_ok += gs_read_timer(rt, h, &ms) != GS_ENOENT;
            cancel_ok += gs_cancel_timer(rt, h) != GS_ENOENT;
        }
    }
    cr_assert_eq(read_ok, 0, "gs_read_timer knew %d made-up handles; no user timer exists", read_ok);
    cr_assert_eq(cancel_ok, 0, "gs_cancel_timer took %d made-up handles; no user timer exists", cancel_ok);
    cr_assert(wait_int_eq(&noutcomes, 1, 3000), "the request's timeout never came");
    cr_assert_eq(outcomes[0].tag, GS_TAG_REPLY_TIMEOUT);
    cr_assert_eq(outcomes[0].req, atomic_load(&sent_req));
    rt_free(rt);
}

Test(request, bad_arguments, .timeout = 10)
{
    gs_runtime *rt = rt_new(1);
    gs_pid e = start_ok(rt, &echo_ops, NULL);
    gs_request r;
    cr_assert_eq(gs_send_request(NULL, e, ECHO, NULL, 0, 10, &r), GS_EINVAL);
    cr_assert_eq(gs_send_request(rt, e, ECHO, NULL, 0, 10, NULL), GS_EINVAL);
    cr_assert_eq(gs_send_request(rt, e, ECHO, NULL, 4, 10, &r), GS_EINVAL);
    cr_assert_eq(gs_send_request(rt, e, ECHO, NULL, 0, -7, &r), GS_EINVAL);
    cr_assert_eq(gs_send_request(rt, e, GS_TAG_REPLY, NULL, 0, 10, &r), GS_EINVAL);
    cr_assert_eq(gs_send_request(rt, GS_NOPID, ECHO, NULL, 0, 10, &r), GS_ENOPROC);
    cr_assert_eq(gs_send_request(rt, 0xDEADBEEFull << 20, ECHO, NULL, 0, 10, &r), GS_ENOPROC);
    cr_assert_eq(gs_wait_request(NULL, 1, NULL, 0, NULL, 10), GS_EINVAL);
    cr_assert_eq(gs_wait_request(rt, 0, NULL, 0, NULL, 10), GS_ENOENT);
    uint64_t seed = 5;
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(gs_wait_request(rt, xorshift64(&seed), NULL, 0, NULL, 0), GS_ENOENT);
    rt_free(rt);
}

/* ---- a wait that meets the reply being written -------------------------- */

#define BIG_REPLY (64 << 10)
static char big_reply[BIG_REPLY];

static int big_call(gs_ctx *ctx, void *state, const gs_msg *m, gs_from from)
{
    return gs_reply(gs_ctx_runtime(ctx), from, big_reply, sizeof big_reply);
}

static const gs_server_ops big_ops = {.name = "big", .handle_call = big_call};

/* gs_wait_request right after gs_send_request often finds the reply being
 * copied into the request (the slot's WRITING phase): that is this
 * request's outcome coming, so it waits for it. It used to take WRITING
 * for "spent" and return GS_ENOENT (about 2 waits in 100). */
Test(request, a_wait_that_meets_the_reply_being_written_gets_it, .timeout = 60)
{
    gs_runtime *rt = rt_new(2);
    gs_pid big = start_ok(rt, &big_ops, NULL);
    static char buf[BIG_REPLY];
    int ok = 0, other = 0, first_other = GS_OK;
    for (int i = 0; i < 3000; i++) {
        gs_request q;
        cr_assert_eq(gs_send_request(rt, big, 1, NULL, 0, GS_INFINITY, &q), GS_OK);
        size_t len = 0;
        int rc = gs_wait_request(rt, q, buf, sizeof buf, &len, 5000);
        if (rc == GS_OK && len == sizeof big_reply) {
            ok++;
        } else if (other++ == 0) {
            first_other = rc;
            (void)gs_wait_request(rt, q, buf, sizeof buf, NULL, 5000); /* collect it, if it is still there */
        }
    }
    cr_assert_eq(other, 0, "%d of 3000 waits failed, the first with %d", other, first_other);
    cr_assert_eq(ok, 3000);
    rt_free(rt);
}
