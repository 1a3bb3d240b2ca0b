/* stress_cast.c - many senders casting to a few servers, under TSan.
 *
 * For 1 worker and then 2 workers:
 *  - NTHREADS outside threads cast numbered messages, in four phases, to
 *    the first 1, 2, 3 and then 4 sink servers (so one mailbox sees all
 *    producers at once, then the load spreads out), and to two forwarder
 *    servers;
 *  - each forwarder re-casts every message it gets to the sink named in
 *    the message, numbering its own sends (server-to-server casts);
 *  - every receiver checks per-sender order (seq == last + 1 for that
 *    sender) and msg->sender (GS_NOPID from threads, the forwarder's pid
 *    from a forwarder);
 *  - at the end gs_call reads each server's counts, which must equal
 *    exactly what was sent (every message handled once), then every server
 *    is stopped and the runtime with it.
 * Relies on the mailbox being FIFO: a call sent after casts that have
 * already returned is handled after them.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "stress_common.h"

enum {
    NTHREADS = 4,
    NSINKS = 4,
    NFWD = 2,
    NSENDERS = NTHREADS + NFWD, /* sender ids: threads 0..3, forwarders 4..5 */
    PHASES = NSINKS,            /* phase p casts to sinks 0..p */
    PER_PHASE = 10000,          /* casts per thread per phase */
};

enum { TAG_DATA = 1, TAG_GET = 2 };

typedef struct {
    uint32_t sender; /* sender id, 0..NSENDERS-1 */
    uint32_t seq;    /* 1, 2, ... per (sender, receiver) */
    uint32_t sink;   /* forwarders: the sink to forward to */
} data_msg;

/* What a receiver knows; also the reply to TAG_GET. */
typedef struct {
    uint64_t count[NSENDERS]; /* messages received per sender */
    uint32_t last[NSENDERS];  /* last seq seen per sender */
    uint64_t bad_order;       /* seq != last + 1 */
    uint64_t bad_sender;      /* msg->sender not what the sender id implies */
    uint64_t bad_msg;         /* wrong length, unknown sender id, ... */
    uint64_t fwd_sent[NSINKS]; /* forwarders: messages forwarded per sink */
    uint64_t fwd_fail;         /* forwarders: gs_cast that did not return GS_OK */
} rx_stats;

typedef struct {
    rx_stats st;
    uint32_t fwd_id;            /* forwarders: own sender id */
    gs_pid self;                /* as seen by init (must match gs_self later) */
    gs_pid sinks[NSINKS];       /* forwarders: where to forward */
    uint32_t fwd_seq[NSINKS];   /* forwarders: last seq sent per sink */
} rx_state;

typedef struct {
    uint32_t fwd_id;
    const gs_pid *sinks; /* NSINKS pids, or NULL for a sink */
} rx_arg;

static atomic_uint_fast64_t g_terminated;
static gs_pid g_fwd_pids[NFWD]; /* see run() */

static int rx_init(gs_ctx *ctx, void *state, const void *arg)
{
    rx_state *s = state;
    const rx_arg *a = arg;
    s->self = gs_self(ctx);
    s->fwd_id = a->fwd_id;
    if (a->sinks)
        memcpy(s->sinks, a->sinks, sizeof s->sinks);
    return GS_OK;
}

/* Records one received message: order and sender checks. */
static const data_msg *rx_account(rx_state *s, const gs_msg *msg)
{
    if (msg->len != sizeof(data_msg) || msg->data == NULL) {
        s->st.bad_msg++;
        return NULL;
    }
    const data_msg *m = msg->data;
    if (m->sender >= NSENDERS) {
        s->st.bad_msg++;
        return NULL;
    }
    gs_pid want = m->sender < NTHREADS ? GS_NOPID : g_fwd_pids[m->sender - NTHREADS];
    if (msg->sender != want)
        s->st.bad_sender++;
    if (m->seq != s->st.last[m->sender] + 1)
        s->st.bad_order++;
    s->st.last[m->sender] = m->seq;
    s->st.count[m->sender]++;
    return m;
}

static int sink_cast(gs_ctx *ctx, void *state, const gs_msg *msg)
{
    rx_state *s = state;
    if (gs_self(ctx) != s->self)
        s->st.bad_msg++;
    if (msg->tag != TAG_DATA)
        s->st.bad_msg++;
    else
        rx_account(s, msg);
    return GS_OK;
}

static int fwd_cast(gs_ctx *ctx, void *state, const gs_msg *msg)
{
    rx_state *s = state;
    const data_msg *m = msg->tag == TAG_DATA ? rx_account(s, msg) : NULL;
    if (m == NULL || m->sink >= NSINKS) {
        s->st.bad_msg++;
        return GS_OK;
    }
    data_msg out = {s->fwd_id, ++s->fwd_seq[m->sink], 0};
    int rc = gs_cast(gs_ctx_runtime(ctx), s->sinks[m->sink], TAG_DATA, &out, sizeof out);
    if (rc == GS_OK)
        s->st.fwd_sent[m->sink]++;
    else
        s->st.fwd_fail++;
    return GS_OK;
}

static int rx_call(gs_ctx *ctx, void *state, const gs_msg *msg, gs_from from)
{
    rx_state *s = state;
    if (msg->tag != TAG_GET)
        return GS_EINVAL; /* crash: the final check will notice the missing server */
    /* The caller waits without a short timeout, so the reply reaches it. */
    CHECK_RC(gs_reply(gs_ctx_runtime(ctx), from, &s->st, sizeof s->st), GS_OK);
    return GS_OK;
}

static void rx_terminate(gs_ctx *ctx, void *state, int reason)
{
    (void)ctx;
    (void)state;
    CHECKF(reason == GS_NORMAL, "terminate reason %d", reason);
    atomic_fetch_add(&g_terminated, 1);
}

static const gs_server_ops sink_ops = {
    .name = "stress_sink",
    .state_size = sizeof(rx_state),
    .init = rx_init,
    .handle_call = rx_call,
    .handle_cast = sink_cast,
    .terminate = rx_terminate,
};

static const gs_server_ops fwd_ops = {
    .name = "stress_forwarder",
    .state_size = sizeof(rx_state),
    .init = rx_init,
    .handle_call = rx_call,
    .handle_cast = fwd_cast,
    .terminate = rx_terminate,
};

typedef struct {
    gs_runtime *rt;
    pthread_barrier_t *start;
    uint32_t id;
    const gs_pid *sinks;
    const gs_pid *fwds;
    /* results, read by main after join */
    uint64_t sent_sink[NSINKS];      /* direct casts per sink */
    uint64_t sent_fwd[NFWD];         /* casts per forwarder */
    uint64_t via_fwd[NFWD][NSINKS];  /* forwarded casts per (forwarder, sink) */
} sender_arg;

static void *sender_main(void *p)
{
    sender_arg *a = p;
    uint32_t seq_sink[NSINKS] = {0};
    uint32_t seq_fwd[NFWD] = {0};
    uint64_t rng = stress_seed(a->id);
    pthread_barrier_wait(a->start);
    for (int phase = 0; phase < PHASES; phase++) {
        uint32_t nsinks = (uint32_t)phase + 1;
        for (int i = 0; i < PER_PHASE; i++) {
            uint64_t r = stress_rand(&rng);
            if (r % 8 == 0) {
                /* through a forwarder, to any sink */
                uint32_t f = (uint32_t)(r >> 8) % NFWD;
                uint32_t sk = (uint32_t)(r >> 16) % NSINKS;
                data_msg m = {a->id, ++seq_fwd[f], sk};
                CHECK_RC(gs_cast(a->rt, a->fwds[f], TAG_DATA, &m, sizeof m), GS_OK);
                a->sent_fwd[f]++;
                a->via_fwd[f][sk]++;
            } else {
                uint32_t sk = (uint32_t)i % nsinks;
                data_msg m = {a->id, ++seq_sink[sk], 0};
                CHECK_RC(gs_cast(a->rt, a->sinks[sk], TAG_DATA, &m, sizeof m), GS_OK);
                a->sent_sink[sk]++;
            }
        }
    }
    return NULL;
}

static rx_stats get_stats(gs_runtime *rt, gs_pid pid)
{
    rx_stats st;
    size_t len = 0;
    CHECK_RC(gs_call(rt, pid, TAG_GET, NULL, 0, &st, sizeof st, &len, 30000), GS_OK);
    CHECK(len == sizeof st);
    CHECK(st.bad_msg == 0);
    CHECKF(st.bad_order == 0, "%llu messages out of per-sender order",
           (unsigned long long)st.bad_order);
    CHECKF(st.bad_sender == 0, "%llu messages with a wrong msg->sender",
           (unsigned long long)st.bad_sender);
    CHECK(st.fwd_fail == 0);
    return st;
}

/* One full round with `workers` workers; returns the messages handled. */
static uint64_t run(unsigned workers)
{
    gs_runtime *rt = NULL;
    gs_runtime_opts opts = {.workers = workers};
    CHECK_RC(gs_runtime_start(&rt, &opts), GS_OK);
    CHECK(rt != NULL);
    atomic_store(&g_terminated, 0);

    /* Sinks first (forwarders need their pids), then the forwarders. */
    gs_pid sinks[NSINKS], fwds[NFWD];
    for (int i = 0; i < NSINKS; i++) {
        rx_arg a = {0, NULL};
        CHECK_RC(gs_start(rt, &sink_ops, &a, &sinks[i]), GS_OK);
        CHECK(sinks[i] != GS_NOPID);
    }
    for (int f = 0; f < NFWD; f++) {
        rx_arg a = {NTHREADS + (uint32_t)f, sinks};
        CHECK_RC(gs_start(rt, &fwd_ops, &a, &fwds[f]), GS_OK);
        CHECK(fwds[f] != GS_NOPID);
    }
    /* Sinks check msg->sender against g_fwd_pids. It is written before the
     * sender threads exist, and forwarders only cast after a sender's cast
     * reached them, so every read happens after this write. */
    for (int f = 0; f < NFWD; f++)
        g_fwd_pids[f] = fwds[f];

    pthread_barrier_t start;
    CHECK(pthread_barrier_init(&start, NULL, NTHREADS + 1) == 0);
    static sender_arg args[NTHREADS];
    pthread_t th[NTHREADS];
    memset(args, 0, sizeof args);
    for (int t = 0; t < NTHREADS; t++) {
        args[t] = (sender_arg){.rt = rt, .start = &start, .id = (uint32_t)t,
                               .sinks = sinks, .fwds = fwds};
        CHECK(pthread_create(&th[t], NULL, sender_main, &args[t]) == 0);
    }
    double t0 = stress_now_s();
    pthread_barrier_wait(&start);
    for (int t = 0; t < NTHREADS; t++)
        CHECK(pthread_join(th[t], NULL) == 0);
    CHECK(pthread_barrier_destroy(&start) == 0);

    /* Forwarders first: once their counts are read, everything they will
     * ever forward has been cast, so the sinks can then be read. */
    uint64_t total = 0;
    uint64_t via[NFWD][NSINKS];
    for (int f = 0; f < NFWD; f++) {
        rx_stats st = get_stats(rt, fwds[f]);
        for (int t = 0; t < NTHREADS; t++) {
            CHECKF(st.count[t] == args[t].sent_fwd[f],
                   "workers %u: forwarder %d got %llu casts from thread %d, %llu sent",
                   workers, f, (unsigned long long)st.count[t], t,
                   (unsigned long long)args[t].sent_fwd[f]);
            CHECK(st.last[t] == args[t].sent_fwd[f]);
            total += st.count[t];
        }
        for (int s = NTHREADS; s < NSENDERS; s++)
            CHECK(st.count[s] == 0);
        for (int sk = 0; sk < NSINKS; sk++) {
            uint64_t want = 0;
            for (int t = 0; t < NTHREADS; t++)
                want += args[t].via_fwd[f][sk];
            CHECK(st.fwd_sent[sk] == want);
            via[f][sk] = st.fwd_sent[sk];
        }
    }
    for (int sk = 0; sk < NSINKS; sk++) {
        rx_stats st = get_stats(rt, sinks[sk]);
        for (int t = 0; t < NTHREADS; t++) {
            CHECKF(st.count[t] == args[t].sent_sink[sk],
                   "workers %u: sink %d got %llu casts from thread %d, %llu sent",
                   workers, sk, (unsigned long long)st.count[t], t,
                   (unsigned long long)args[t].sent_sink[sk]);
            CHECK(st.last[t] == args[t].sent_sink[sk]);
            total += st.count[t];
        }
        for (int f = 0; f < NFWD; f++) {
            CHECKF(st.count[NTHREADS + f] == via[f][sk],
                   "workers %u: sink %d got %llu casts from forwarder %d, %llu forwarded",
                   workers, sk, (unsigned long long)st.count[NTHREADS + f], f,
                   (unsigned long long)via[f][sk]);
            total += st.count[NTHREADS + f];
        }
    }
    double t1 = stress_now_s();

    for (int f = 0; f < NFWD; f++)
        CHECK_RC(gs_stop(rt, fwds[f], GS_NORMAL, 30000), GS_OK);
    for (int sk = 0; sk < NSINKS; sk++)
        CHECK_RC(gs_stop(rt, sinks[sk], GS_NORMAL, 30000), GS_OK);
    CHECK(atomic_load(&g_terminated) == NSINKS + NFWD);
    /* A stopped pid is dead for good. */
    CHECK_RC(gs_cast(rt, sinks[0], TAG_DATA, NULL, 0), GS_ENOPROC);
    CHECK_RC(gs_runtime_stop(rt), GS_OK);
    CHECK(atomic_load(&g_terminated) == NSINKS + NFWD);

    uint64_t want = (uint64_t)NTHREADS * PHASES * PER_PHASE;
    uint64_t forwarded = 0;
    for (int f = 0; f < NFWD; f++)
        for (int sk = 0; sk < NSINKS; sk++)
            forwarded += via[f][sk];
    CHECK(total == want + forwarded);
    fprintf(stderr, "stress_cast: workers %u: %llu messages (%llu forwarded) in %.2f s\n",
            workers, (unsigned long long)total, (unsigned long long)forwarded, t1 - t0);
    return total;
}

int main(void)
{
    stress_watchdog(300);
    uint64_t n1 = run(1);
    uint64_t n2 = run(2);
    printf("stress_cast: OK: %llu messages with 1 worker, %llu with 2 workers, "
           "every one handled once and in per-sender order\n",
           (unsigned long long)n1, (unsigned long long)n2);
    return 0;
}
