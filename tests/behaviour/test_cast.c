/* test_cast.c - gs_cast: copying, sizes, delivery counts and order, errors. */
#include "common.h"

enum {
    TAG_PATTERN = 10, /* payload: 64 bytes, seq in the first 4, rest (seq & 0xff) */
    TAG_EMPTY = 11,   /* expects len 0 and data NULL */
    TAG_BIG = 12,     /* 1 MiB pattern */
    TAG_SEQ_BASE = 100, /* TAG_SEQ_BASE + producer id, payload: uint32 seq */
    TAG_FORWARD = 20, /* forward a cast to the pid in the payload */
    TAG_FORWARDED = 21, /* payload uint32 seq, checked for order */
    TAG_COUNTDOWN = 22, /* payload uint32 n: cast n-1 to self while n > 0 */
    TAG_STATS = 30,   /* call: returns the stats struct */
};
#define TAG_ODD 0xFFFEFFFFu /* highest user tag */

#define NPROD 4
#define PATTERN_LEN 64
#define BIG_LEN ((size_t)1 << 20)

typedef struct {
    int64_t received;
    int64_t pattern_ok, pattern_bad;
    int64_t empty_ok, empty_bad;
    int64_t big_ok, big_bad;
    int64_t misaligned;
    int64_t odd_tag;
    int64_t seq_count[NPROD];
    int64_t seq_last[NPROD]; /* last seq seen + 1 */
    int64_t order_violations;
    int64_t bad_sender;
    int64_t forwarded_from_ok, forwarded_from_bad, forwarded_order_bad;
    int64_t countdown_seen, countdown_cast_failed;
    gs_pid forward_expect;
} cast_state;

static atomic_int g_concurrent;      /* callbacks of one server currently running */
static atomic_int g_overlap;         /* times two callbacks of the same server overlapped */
static atomic_int g_terminated;
static cast_state g_final[4];        /* copied by terminate, indexed by init arg */
static atomic_int g_final_set[4];

typedef struct {
    cast_state st;
    int index;
    atomic_int busy;
} server_state;

static int cs_init(gs_ctx *ctx, void *state, const void *arg)
{
    (void)ctx;
    server_state *s = state;
    s->index = arg ? *(const int *)arg : 0;
    return GS_OK;
}

static void check_payload(cast_state *st, const gs_msg *msg)
{
    if (msg->len && ((uintptr_t)msg->data % _Alignof(max_align_t)) != 0)
        st->misaligned++;
    switch (msg->tag) {
    case TAG_PATTERN: {
        const unsigned char *p = msg->data;
        uint32_t seq;
        bool ok = msg->len == PATTERN_LEN && p != NULL;
        if (ok) {
            memcpy(&seq, p, 4);
            for (size_t i = 4; i < PATTERN_LEN; i++)
                if (p[i] != (unsigned char)(seq & 0xff))
                    ok = false;
            if ((int64_t)seq != st->pattern_ok + st->pattern_bad)
                ok = false;
        }
        if (ok)
            st->pattern_ok++;
        else
            st->pattern_bad++;
        break;
    }
    case TAG_EMPTY:
        if (msg->len == 0 && msg->data == NULL)
            st->empty_ok++;
        else
            st->empty_bad++;
        break;
    case TAG_BIG: {
        const unsigned char *p = msg->data;
        bool ok = msg->len == BIG_LEN && p != NULL;
        for (size_t i = 0; ok && i < BIG_LEN; i++)
            if (p[i] != (unsigned char)((i * 7 + 3) & 0xff))
                ok = false;
        if (ok)
            st->big_ok++;
        else
            st->big_bad++;
        break;
    }
    case TAG_ODD:
        st->odd_tag++;
        break;
    default:
        if (msg->tag >= TAG_SEQ_BASE && msg->tag < TAG_SEQ_BASE + NPROD) {
            int p = (int)(msg->tag - TAG_SEQ_BASE);
            uint32_t seq = 0;
            if (msg->len == sizeof seq)
                memcpy(&seq, msg->data, sizeof seq);
            else
                st->order_violations++;
            if ((int64_t)seq != st->seq_last[p])
                st->order_violations++;
            st->seq_last[p] = (int64_t)seq + 1;
            st->seq_count[p]++;
            if (msg->sender != GS_NOPID)
                st->bad_sender++;
        }
        break;
    }
}

struct fwd {
    gs_pid to;
    uint32_t seq;
};

static int cs_cast(gs_ctx *ctx, void *state, const gs_msg *msg)
{
    server_state *s = state;
    if (atomic_fetch_add(&s->busy, 1) != 0)
        atomic_fetch_add(&g_overlap, 1);
    s->st.received++;
    if (msg->tag == TAG_FORWARD) {
        struct fwd f;
        memcpy(&f, msg->data, sizeof f);
        gs_cast(gs_ctx_runtime(ctx), f.to, TAG_FORWARDED, &f.seq, sizeof f.seq);
    } else if (msg->tag == TAG_FORWARDED) {
        uint32_t seq = UINT32_MAX;
        if (msg->len == sizeof seq)
            memcpy(&seq, msg->data, sizeof seq);
        if ((int64_t)seq != s->st.forwarded_from_ok + s->st.forwarded_from_bad)
            s->st.forwarded_order_bad++;
        if (msg->sender == s->st.forward_expect && msg->sender != GS_NOPID)
            s->st.forwarded_from_ok++;
        else
            s->st.forwarded_from_bad++;
    } else if (msg->tag == TAG_COUNTDOWN) {
        uint32_t n;
        memcpy(&n, msg->data, sizeof n);
        s->st.countdown_seen++;
        if (n > 0) {
            n--;
            if (gs_cast(gs_ctx_runtime(ctx), gs_self(ctx), TAG_COUNTDOWN, &n, sizeof n) != GS_OK)
                s->st.countdown_cast_failed++;
        }
    } else {
        check_payload(&s->st, msg);
    }
    atomic_fetch_sub(&s->busy, 1);
    return GS_OK;
}

static int cs_call(gs_ctx *ctx, void *state, const gs_msg *msg, gs_from from)
{
    server_state *s = state;
    if (atomic_fetch_add(&s->busy, 1) != 0)
        atomic_fetch_add(&g_overlap, 1);
    if (msg->tag == TAG_FORWARDED && msg->len == sizeof(gs_pid))
        memcpy(&s->st.forward_expect, msg->data, sizeof(gs_pid));
    atomic_fetch_sub(&s->busy, 1);
    gs_reply(gs_ctx_runtime(ctx), from, &s->st, sizeof s->st);
    return GS_OK;
}

static void cs_terminate(gs_ctx *ctx, void *state, int reason)
{
    (void)ctx;
    (void)reason;
    server_state *s = state;
    if (s->index >= 0 && s->index < 4) {
        g_final[s->index] = s->st;
        atomic_store(&g_final_set[s->index], 1);
    }
    atomic_fetch_add(&g_terminated, 1);
}

static const gs_server_ops cast_ops = {
    .name = "cast-server",
    .state_size = sizeof(server_state),
    .init = cs_init,
    .handle_cast = cs_cast,
    .handle_call = cs_call,
    .terminate = cs_terminate,
};

static void reset(void)
{
    atomic_store(&g_concurrent, 0);
    atomic_store(&g_overlap, 0);
    atomic_store(&g_terminated, 0);
    memset(g_final, 0, sizeof g_final);
    for (int i = 0; i < 4; i++)
        atomic_store(&g_final_set[i], 0);
}

static cast_state get_stats(gs_runtime *rt, gs_pid pid)
{
    cast_state st;
    memset(&st, 0, sizeof st);
    size_t len = 0;
    int rc = gs_call(rt, pid, TAG_STATS, NULL, 0, &st, sizeof st, &len, 10000);
    cr_assert_eq(rc, GS_OK, "stats call failed: %d (%s)", rc, gs_strerror(rc));
    cr_assert_eq(len, sizeof st);
    return st;
}

/* ------------------------------------------------------------------ */

Test(cast, payload_is_copied_at_send_time, .timeout = 15)
{
    reset();
    gs_runtime *rt = rt_new(2);
    int idx = 0;
    gs_pid pid = start_ok(rt, &cast_ops, &idx);
    enum { N = 500 };
    unsigned char buf[PATTERN_LEN];
    for (uint32_t seq = 0; seq < N; seq++) {
        memcpy(buf, &seq, 4);
        memset(buf + 4, (int)(seq & 0xff), PATTERN_LEN - 4);
        cr_assert_eq(gs_cast(rt, pid, TAG_PATTERN, buf, sizeof buf), GS_OK);
        memset(buf, 0xEE, sizeof buf); /* the server must still see the original */
    }
    stop_ok(rt, pid); /* queued casts are handled before the stop */
    cr_assert_eq(atomic_load(&g_final_set[0]), 1, "terminate did not run");
    cr_assert_eq(g_final[0].pattern_bad, 0, "%" PRId64 " payloads were not the sent bytes",
                 g_final[0].pattern_bad);
    cr_assert_eq(g_final[0].pattern_ok, N);
    cr_assert_eq(g_final[0].misaligned, 0, "payload data not aligned to max_align_t");
    rt_free(rt);
}

Test(cast, zero_length_payload, .timeout = 10)
{
    reset();
    gs_runtime *rt = rt_new(1);
    int idx = 0;
    gs_pid pid = start_ok(rt, &cast_ops, &idx);
    cr_assert_eq(gs_cast(rt, pid, TAG_EMPTY, NULL, 0), GS_OK);
    /* a non-NULL pointer with len 0 is fine too, and the server sees NULL */
    char dummy = 'z';
    cr_assert_eq(gs_cast(rt, pid, TAG_EMPTY, &dummy, 0), GS_OK);
    cast_state st = get_stats(rt, pid);
    (void)st;
    stop_ok(rt, pid);
    cr_assert_eq(g_final[0].empty_ok + g_final[0].empty_bad, 2, "empty casts were not delivered");
    cr_assert_eq(g_final[0].empty_bad, 0, "an empty payload must arrive as data NULL, len 0");
    rt_free(rt);
}

Test(cast, one_mebibyte_payload, .timeout = 20)
{
    reset();
    gs_runtime *rt = rt_new(2);
    int idx = 0;
    gs_pid pid = start_ok(rt, &cast_ops, &idx);
    unsigned char *big = malloc(BIG_LEN);
    cr_assert_not_null(big);
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < BIG_LEN; i++)
            big[i] = (unsigned char)((i * 7 + 3) & 0xff);
        cr_assert_eq(gs_cast(rt, pid, TAG_BIG, big, BIG_LEN), GS_OK);
        memset(big, 0, BIG_LEN);
    }
    free(big);
    stop_ok(rt, pid);
    cr_assert_eq(g_final[0].big_bad, 0, "a 1 MiB payload arrived damaged");
    cr_assert_eq(g_final[0].big_ok, 3);
    cr_assert_eq(g_final[0].misaligned, 0);
    rt_free(rt);
}

/* ---- many producers, exact delivery and per-sender order ---- */

#define PER_PRODUCER 20000

struct producer_arg {
    gs_runtime *rt;
    gs_pid to[2];
    int nservers;
    int id;
    atomic_int *go;
    int failures;
    int first_error;
};

static void *producer(void *p)
{
    struct producer_arg *a = p;
    while (!atomic_load(a->go)) {
    }
    for (uint32_t seq = 0; seq < PER_PRODUCER; seq++) {
        for (int s = 0; s < a->nservers; s++) {
            uint32_t v = seq;
            int rc = gs_cast(a->rt, a->to[s], TAG_SEQ_BASE + (uint32_t)a->id, &v, sizeof v);
            if (rc != GS_OK) {
                if (!a->failures)
                    a->first_error = rc;
                a->failures++;
            }
        }
    }
    return NULL;
}

static void run_producers(unsigned workers, int nservers)
{
    reset();
    gs_runtime *rt = rt_new(workers);
    int idx[2] = {0, 1};
    gs_pid pids[2];
    for (int s = 0; s < nservers; s++)
        pids[s] = start_ok(rt, &cast_ops, &idx[s]);
    atomic_int go = 0;
    pthread_t th[NPROD];
    struct producer_arg args[NPROD];
    for (int i = 0; i < NPROD; i++) {
        args[i] = (struct producer_arg){.rt = rt, .nservers = nservers, .id = i, .go = &go};
        for (int s = 0; s < nservers; s++)
            args[i].to[s] = pids[s];
        cr_assert_eq(pthread_create(&th[i], NULL, producer, &args[i]), 0);
    }
    atomic_store(&go, 1);
    for (int i = 0; i < NPROD; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < NPROD; i++)
        cr_assert_eq(args[i].failures, 0, "producer %d: %d casts failed (first: %d %s)", i,
                     args[i].failures, args[i].first_error, gs_strerror(args[i].first_error));
    for (int s = 0; s < nservers; s++)
        stop_ok(rt, pids[s]); /* everything queued before the stop is handled first */
    for (int s = 0; s < nservers; s++) {
        cr_assert_eq(atomic_load(&g_final_set[s]), 1);
        cast_state *st = &g_final[s];
        for (int p = 0; p < NPROD; p++) {
            cr_assert_eq(st->seq_count[p], PER_PRODUCER,
                         "server %d got %" PRId64 " messages from producer %d, sent %d", s,
                         st->seq_count[p], p, PER_PRODUCER);
            cr_assert_eq(st->seq_last[p], PER_PRODUCER);
        }
        cr_assert_eq(st->order_violations, 0, "server %d: %" PRId64 " per-sender order violations",
                     s, st->order_violations);
        cr_assert_eq(st->bad_sender, 0, "casts from outside threads must have sender GS_NOPID");
        cr_assert_eq(st->received, (int64_t)NPROD * PER_PRODUCER);
    }
    cr_assert_eq(atomic_load(&g_overlap), 0, "callbacks of one server ran concurrently");
    rt_free(rt);
}

Test(cast, exactly_once_in_order_one_worker, .timeout = 40)
{
    run_producers(1, 1);
}

Test(cast, exactly_once_in_order_two_workers, .timeout = 40)
{
    run_producers(2, 1);
}

Test(cast, exactly_once_in_order_two_workers_two_servers, .timeout = 40)
{
    run_producers(2, 2);
}

/* ---- sender field and tags ---- */

Test(cast, sender_is_the_casting_server, .timeout = 10)
{
    reset();
    gs_runtime *rt = rt_new(2);
    int i0 = 0, i1 = 1;
    gs_pid a = start_ok(rt, &cast_ops, &i0);
    gs_pid b = start_ok(rt, &cast_ops, &i1);
    /* tell b whom to expect */
    cast_state st;
    cr_assert_eq(gs_call(rt, b, TAG_FORWARDED, &a, sizeof a, &st, sizeof st, NULL, 5000), GS_OK);
    enum { N = 2000 };
    for (uint32_t i = 0; i < N; i++) {
        struct fwd f;
        memset(&f, 0, sizeof f);
        f.to = b;
        f.seq = i;
        cr_assert_eq(gs_cast(rt, a, TAG_FORWARD, &f, sizeof f), GS_OK);
    }
    stop_ok(rt, a); /* a has forwarded everything once it has terminated */
    stop_ok(rt, b);
    cr_assert_eq(g_final[1].forwarded_from_bad, 0, "msg->sender was not the casting server");
    cr_assert_eq(g_final[1].forwarded_from_ok, N);
    cr_assert_eq(g_final[1].forwarded_order_bad, 0,
                 "casts from one server to another arrived out of order");
    rt_free(rt);
}

Test(cast, server_casting_to_itself, .timeout = 15)
{
    reset();
    gs_runtime *rt = rt_new(1);
    int idx = 0;
    gs_pid pid = start_ok(rt, &cast_ops, &idx);
    uint32_t n = 10000;
    cr_assert_eq(gs_cast(rt, pid, TAG_COUNTDOWN, &n, sizeof n), GS_OK);
    /* poll with calls until the countdown is over */
    int64_t end = now_ms() + 10000;
    cast_state st;
    do {
        st = get_stats(rt, pid);
        if (st.countdown_seen == (int64_t)n + 1)
            break;
        sleep_ms(5);
    } while (now_ms() < end);
    cr_assert_eq(st.countdown_cast_failed, 0, "gs_cast to self from handle_cast failed");
    cr_assert_eq(st.countdown_seen, (int64_t)n + 1, "self-cast chain stopped after %" PRId64,
                 st.countdown_seen);
    stop_ok(rt, pid);
    rt_free(rt);
}

Test(cast, highest_user_tag_is_accepted, .timeout = 10)
{
    reset();
    gs_runtime *rt = rt_new(1);
    int idx = 0;
    gs_pid pid = start_ok(rt, &cast_ops, &idx);
    cr_assert_eq(gs_cast(rt, pid, TAG_ODD, NULL, 0), GS_OK);
    stop_ok(rt, pid);
    cr_assert_eq(g_final[0].odd_tag, 1, "tag 0xFFFEFFFF was not delivered unchanged");
    rt_free(rt);
}

/* ---- errors ---- */

Test(cast, enoproc_for_nopid_random_and_stopped, .timeout = 10)
{
    reset();
    gs_runtime *rt = rt_new(1);
    int idx = 0;
    gs_pid pid = start_ok(rt, &cast_ops, &idx);
    cr_assert_eq(gs_cast(rt, GS_NOPID, 1, NULL, 0), GS_ENOPROC);
    cr_assert_eq(gs_cast(rt, GS_NOPID, 1, "abc", 3), GS_ENOPROC);
    uint64_t seed = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < 1000; i++) {
        gs_pid r = xorshift64(&seed);
        if (r == pid)
            continue;
        cr_assert_eq(gs_cast(rt, r, 1, "x", 1), GS_ENOPROC, "random pid %#" PRIx64, r);
    }
    stop_ok(rt, pid);
    cr_assert_eq(gs_cast(rt, pid, 1, NULL, 0), GS_ENOPROC);
    cr_assert_eq(gs_cast(rt, pid, TAG_PATTERN, "abcd", 4), GS_ENOPROC);
    cr_assert_eq(g_final[0].received, 0, "random pids delivered messages to the live server");
    rt_free(rt);
}

Test(cast, einval_for_bad_arguments, .timeout = 10)
{
    reset();
    gs_runtime *rt = rt_new(1);
    int idx = 0;
    gs_pid pid = start_ok(rt, &cast_ops, &idx);
    cr_assert_eq(gs_cast(NULL, pid, 1, NULL, 0), GS_EINVAL, "NULL runtime");
    cr_assert_eq(gs_cast(NULL, GS_NOPID, 1, NULL, 0), GS_EINVAL, "NULL runtime, no pid");
    cr_assert_eq(gs_cast(rt, pid, 1, NULL, 5), GS_EINVAL, "NULL data with len > 0");
    cr_assert_eq(gs_cast(rt, pid, GS_TAG_RUNTIME_BASE, NULL, 0), GS_EINVAL, "runtime tag");
    cr_assert_eq(gs_cast(rt, pid, 0xFFFF1234u, "a", 1), GS_EINVAL, "runtime tag");
    cr_assert_eq(gs_cast(rt, pid, 0xFFFFFFFFu, NULL, 0), GS_EINVAL, "runtime tag");
    stop_ok(rt, pid);
    cr_assert_eq(g_final[0].received, 0, "a refused cast was delivered");
    rt_free(rt);
}

Test(cast, emsgsize_checked_before_reading_payload, .timeout = 10)
{
    reset();
    gs_runtime *rt = rt_new(1);
    int idx = 0;
    gs_pid pid = start_ok(rt, &cast_ops, &idx);
    char small[16] = "tiny";
    /* the library must refuse on len alone: `small` is far shorter */
    cr_assert_eq(gs_cast(rt, pid, 1, small, GS_MSG_MAX + 1), GS_EMSGSIZE);
    cr_assert_eq(gs_cast(rt, pid, 1, small, SIZE_MAX), GS_EMSGSIZE);
    cr_assert_eq(gs_cast(rt, pid, 1, small, SIZE_MAX / 2 + 1), GS_EMSGSIZE);
    stop_ok(rt, pid);
    cr_assert_eq(g_final[0].received, 0, "an oversized cast was delivered");
    rt_free(rt);
}
