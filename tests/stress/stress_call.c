/* stress_call.c - concurrent gs_call, late replies and timeouts, under TSan.
 *
 * 2 workers. NTHREADS outside threads each make ITERS calls, chosen at
 * random among:
 *  - echo: a call to one of NECHO echo servers, which reply at once with
 *    the request's unique id and their own pid (sometimes into a buffer
 *    too small: GS_EMSGSIZE with the first bytes copied);
 *  - relay: a call to the relay server, whose handle_call itself calls an
 *    echo server (server-to-server call inside a callback) and replies
 *    with what it got; now and then it also calls itself (GS_EDEADLK);
 *  - late: a call with a 1-3 ms timeout to the late server, which saves
 *    `from` and returns GS_NOREPLY; a replier thread answers later, after
 *    a random pause (some calls are answered inside the callback);
 *  - quick: a call with a 0-1 ms timeout to a plain echo server.
 * Every request carries a unique id that the reply echoes: a reply with
 * another id means a call got a reply meant for a different one. After a
 * timed-out late call the reply buffer is filled with a sentinel that
 * must stay intact (a late reply must never be written into it).
 * Exact accounting at the end: every echo call was handled once; the
 * replier's gs_reply returned GS_OK exactly as many times as late calls
 * returned GS_OK.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "stress_common.h"

enum {
    NTHREADS = 4,
    ITERS = 5000,
    NECHO = 2,
    RELAY_CALL_TIMEOUT_MS = 20000, /* server-to-server calls: never expected to expire */
    CALL_TIMEOUT_MS = 30000,       /* outside calls that must succeed */
};

enum { TAG_ECHO = 1, TAG_RELAY, TAG_LATE, TAG_SYNC, TAG_STATS };

typedef struct {
    uint64_t id;
} request;

typedef struct {
    uint64_t id;     /* the request's id */
    gs_pid server;   /* who answered (for relay: the echo server behind it) */
    int64_t status;  /* relay: the status of its inner call */
    uint64_t pad[2]; /* makes a reply larger than a request */
} reply_msg;

typedef struct {
    uint64_t from_outside; /* calls with msg->sender == GS_NOPID */
    uint64_t from_relay;   /* calls with msg->sender == the relay's pid */
    uint64_t bad;          /* anything else wrong */
} echo_stats;

static gs_pid g_relay;           /* written before the caller threads start */
static gs_pid g_echo[NECHO];     /* idem */
static atomic_uint_fast64_t g_log_errors, g_log_warnings;

/* ---- the echo servers ------------------------------------------------ */

static int echo_call(gs_ctx *ctx, void *state, const gs_msg *msg, gs_from from)
{
    echo_stats *st = state;
    gs_runtime *rt = gs_ctx_runtime(ctx);
    if (msg->tag == TAG_STATS) {
        CHECK_RC(gs_reply(rt, from, st, sizeof *st), GS_OK);
        return GS_OK;
    }
    if (msg->tag != TAG_ECHO || msg->len != sizeof(request)) {
        st->bad++;
        return GS_EINVAL; /* crash: later calls fail and the test reports it */
    }
    if (msg->sender == GS_NOPID)
        st->from_outside++;
    else if (msg->sender == g_relay)
        st->from_relay++;
    else
        st->bad++;
    const request *rq = msg->data;
    reply_msg rp = {rq->id, gs_self(ctx), 0, {rq->id, ~rq->id}};
    int rc = gs_reply(rt, from, &rp, sizeof rp);
    /* The "quick" server's callers may have given up already. */
    CHECK_RC2(rc, GS_OK, GS_ENOENT);
    return GS_OK;
}

static const gs_server_ops echo_ops = {
    .name = "stress_echo",
    .state_size = sizeof(echo_stats),
    .handle_call = echo_call,
};

/* ---- the relay server: calls an echo server from inside handle_call -- */

static int relay_call(gs_ctx *ctx, void *state, const gs_msg *msg, gs_from from)
{
    (void)state;
    gs_runtime *rt = gs_ctx_runtime(ctx);
    CHECK(msg->tag == TAG_RELAY && msg->len == sizeof(request));
    CHECK(msg->sender == GS_NOPID);
    const request *rq = msg->data;
    if (rq->id % 64 == 0) {
        /* A server calling itself would wait forever: refused. */
        reply_msg dummy;
        CHECK_RC(gs_call(rt, gs_self(ctx), TAG_ECHO, rq, sizeof *rq, &dummy, sizeof dummy,
                         NULL, RELAY_CALL_TIMEOUT_MS),
                 GS_EDEADLK);
    }
    gs_pid echo = g_echo[rq->id % NECHO];
    reply_msg inner;
    memset(&inner, 0, sizeof inner);
    size_t len = 0;
    int rc = gs_call(rt, echo, TAG_ECHO, rq, sizeof *rq, &inner, sizeof inner, &len,
                     RELAY_CALL_TIMEOUT_MS);
    reply_msg out = {rq->id, inner.server, rc, {0, 0}};
    if (rc == GS_OK && (len != sizeof inner || inner.id != rq->id))
        out.status = GS_EBADRETURN; /* reported by the caller's check */
    CHECK_RC(gs_reply(rt, from, &out, sizeof out), GS_OK);
    return GS_OK;
}

static const gs_server_ops relay_ops = {
    .name = "stress_relay",
    .handle_call = relay_call,
};

/* ---- the late server and its replier thread -------------------------- */

typedef struct {
    gs_from from;
    uint64_t id;
} pending;

enum { QCAP = NTHREADS * ITERS + 16 }; /* never more pending than late calls */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pending *items;
    size_t head, tail;
    bool done;
} g_q = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, 0, false};

static atomic_uint_fast64_t g_late_handled;  /* late requests the server saw */
static atomic_uint_fast64_t g_replies_ok;    /* gs_reply to a late call: GS_OK */
static atomic_uint_fast64_t g_replies_gone;  /* gs_reply to a late call: GS_ENOENT */
/* Replies from the call's own handle_call: GS_OK even when the caller had
 * already given up (genserver.h, gs_reply), so they are counted apart and
 * bound the callers' successes only from above. */
static atomic_uint_fast64_t g_replies_inline;

static void late_reply(gs_runtime *rt, gs_from from, uint64_t id, bool inline_reply)
{
    reply_msg rp = {id, GS_NOPID, 0, {id, ~id}};
    int rc = gs_reply(rt, from, &rp, sizeof rp);
    CHECK_RC2(rc, GS_OK, GS_ENOENT);
    if (inline_reply)
        atomic_fetch_add(&g_replies_inline, 1);
    else
        atomic_fetch_add(rc == GS_OK ? &g_replies_ok : &g_replies_gone, 1);
}

static int late_call(gs_ctx *ctx, void *state, const gs_msg *msg, gs_from from)
{
    uint64_t *n = state;
    gs_runtime *rt = gs_ctx_runtime(ctx);
    if (msg->tag == TAG_SYNC) {
        CHECK_RC(gs_reply(rt, from, NULL, 0), GS_OK);
        return GS_OK;
    }
    CHECK(msg->tag == TAG_LATE && msg->len == sizeof(request));
    const request *rq = msg->data;
    atomic_fetch_add(&g_late_handled, 1);
    if (++*n % 4 == 0) {
        late_reply(rt, from, rq->id, true); /* sometimes at once, from the callback */
        return GS_OK;
    }
    pthread_mutex_lock(&g_q.mu);
    CHECK(g_q.tail < QCAP);
    g_q.items[g_q.tail++] = (pending){from, rq->id};
    pthread_cond_signal(&g_q.cv);
    pthread_mutex_unlock(&g_q.mu);
    return GS_NOREPLY;
}

static const gs_server_ops late_ops = {
    .name = "stress_late",
    .state_size = sizeof(uint64_t),
    .handle_call = late_call,
};

static void *replier_main(void *p)
{
    gs_runtime *rt = p;
    uint64_t rng = stress_seed(99);
    for (;;) {
        pthread_mutex_lock(&g_q.mu);
        while (g_q.head == g_q.tail && !g_q.done)
            pthread_cond_wait(&g_q.cv, &g_q.mu);
        if (g_q.head == g_q.tail) { /* done and drained */
            pthread_mutex_unlock(&g_q.mu);
            return NULL;
        }
        pending pd = g_q.items[g_q.head++];
        pthread_mutex_unlock(&g_q.mu);
        /* Vary how late the reply is: around the callers' 1-3 ms timeouts. */
        uint64_t r = stress_rand(&rng);
        if (r % 3 != 0)
            stress_sleep_us((long)(r >> 8) % 2500);
        late_reply(rt, pd.from, pd.id, false);
    }
}

/* ---- the caller threads ---------------------------------------------- */

typedef struct {
    gs_runtime *rt;
    pthread_barrier_t *start;
    unsigned idx;
    gs_pid late, quick;
    /* results */
    uint64_t echo_sent[NECHO];  /* handled echo calls per echo server (outside) */
    uint64_t relay_to[NECHO];   /* relay calls routed to each echo server */
    uint64_t late_ok, late_timedout;
    uint64_t quick_ok, quick_timedout;
    uint64_t small_buf;
} caller_arg;

static const unsigned char SENTINEL = 0xA5;

static void check_sentinel(const reply_msg *buf)
{
    const unsigned char *b = (const unsigned char *)buf;
    for (size_t i = 0; i < sizeof *buf; i++)
        CHECKF(b[i] == SENTINEL,
               "a reply was written into the buffer of a call that had timed out");
}

static void *caller_main(void *p)
{
    caller_arg *a = p;
    gs_runtime *rt = a->rt;
    uint64_t rng = stress_seed(a->idx + 1000);
    reply_msg late_buf; /* reused by every late call of this thread */
    bool late_poisoned = false;
    pthread_barrier_wait(a->start);
    for (uint64_t i = 0; i < ITERS; i++) {
        request rq = {((uint64_t)(a->idx + 1) << 32) | i};
        uint64_t r = stress_rand(&rng) % 100;
        reply_msg rp;
        memset(&rp, 0, sizeof rp);
        size_t len = 0;
        if (r < 40) { /* echo */
            unsigned k = (unsigned)(i % NECHO);
            if (r < 4) { /* too small a buffer: only the id fits */
                uint64_t id_only = 0;
                CHECK_RC(gs_call(rt, g_echo[k], TAG_ECHO, &rq, sizeof rq, &id_only,
                                 sizeof id_only, &len, CALL_TIMEOUT_MS),
                         GS_EMSGSIZE);
                CHECK(len == sizeof(reply_msg));
                CHECKF(id_only == rq.id, "got id %#llx, expected %#llx",
                       (unsigned long long)id_only, (unsigned long long)rq.id);
                a->small_buf++;
            } else {
                CHECK_RC(gs_call(rt, g_echo[k], TAG_ECHO, &rq, sizeof rq, &rp, sizeof rp,
                                 &len, CALL_TIMEOUT_MS),
                         GS_OK);
                CHECK(len == sizeof rp);
                CHECKF(rp.id == rq.id, "echo reply for %#llx to call %#llx",
                       (unsigned long long)rp.id, (unsigned long long)rq.id);
                CHECK(rp.server == g_echo[k]);
                CHECK(rp.pad[0] == rq.id && rp.pad[1] == ~rq.id);
            }
            a->echo_sent[k]++;
        } else if (r < 60) { /* relay: a server calling a server */
            CHECK_RC(gs_call(rt, g_relay, TAG_RELAY, &rq, sizeof rq, &rp, sizeof rp, &len,
                             CALL_TIMEOUT_MS),
                     GS_OK);
            CHECK(len == sizeof rp);
            CHECKF(rp.id == rq.id, "relay reply for %#llx to call %#llx",
                   (unsigned long long)rp.id, (unsigned long long)rq.id);
            CHECKF(rp.status == GS_OK, "the relay's inner call returned %d (%s)",
                   (int)rp.status, gs_strerror((int)rp.status));
            CHECK(rp.server == g_echo[rq.id % NECHO]);
            a->relay_to[rq.id % NECHO]++;
        } else if (r < 90) { /* late, with a short timeout */
            if (late_poisoned)
                check_sentinel(&late_buf);
            memset(&late_buf, 0, sizeof late_buf);
            int timeout = 1 + (int)(i % 3);
            int rc = gs_call(rt, a->late, TAG_LATE, &rq, sizeof rq, &late_buf,
                             sizeof late_buf, &len, timeout);
            CHECK_RC2(rc, GS_OK, GS_ETIMEDOUT);
            if (rc == GS_OK) {
                CHECK(len == sizeof late_buf);
                CHECKF(late_buf.id == rq.id,
                       "late call %#llx got the reply meant for call %#llx",
                       (unsigned long long)rq.id, (unsigned long long)late_buf.id);
                CHECK(late_buf.pad[0] == rq.id && late_buf.pad[1] == ~rq.id);
                a->late_ok++;
                late_poisoned = false;
            } else {
                a->late_timedout++;
                memset(&late_buf, SENTINEL, sizeof late_buf);
                late_poisoned = true;
            }
        } else { /* quick: timeout 0 or 1 ms against a server that answers at once */
            int rc = gs_call(rt, a->quick, TAG_ECHO, &rq, sizeof rq, &rp, sizeof rp, &len,
                             (int)(i % 2));
            CHECK_RC2(rc, GS_OK, GS_ETIMEDOUT);
            if (rc == GS_OK) {
                CHECK(len == sizeof rp);
                CHECKF(rp.id == rq.id, "quick reply for %#llx to call %#llx",
                       (unsigned long long)rp.id, (unsigned long long)rq.id);
                a->quick_ok++;
            } else {
                a->quick_timedout++;
            }
        }
    }
    if (late_poisoned) {
        stress_sleep_us(5000); /* give a stray reply time to show up */
        check_sentinel(&late_buf);
    }
    return NULL;
}

static void count_log(void *user, int level, const char *line)
{
    (void)user;
    CHECK(line != NULL);
    if (level == GS_LOG_ERROR) {
        atomic_fetch_add(&g_log_errors, 1);
        fprintf(stderr, "stress_call: unexpected error logged: %s\n", line);
    }
    else if (level == GS_LOG_WARNING)
        atomic_fetch_add(&g_log_warnings, 1);
}

int main(void)
{
    stress_watchdog(300);
    g_q.items = calloc(QCAP, sizeof *g_q.items);
    CHECK(g_q.items != NULL);

    gs_runtime *rt = NULL;
    gs_runtime_opts opts = {.workers = 2};
    CHECK_RC(gs_runtime_start(&rt, &opts), GS_OK);
    CHECK_RC(gs_set_logger(rt, count_log, NULL), GS_OK);

    gs_pid late, quick;
    for (int k = 0; k < NECHO; k++)
        CHECK_RC(gs_start(rt, &echo_ops, NULL, &g_echo[k]), GS_OK);
    CHECK_RC(gs_start(rt, &relay_ops, NULL, &g_relay), GS_OK);
    CHECK_RC(gs_start(rt, &late_ops, NULL, &late), GS_OK);
    CHECK_RC(gs_start(rt, &echo_ops, NULL, &quick), GS_OK);

    pthread_t replier;
    CHECK(pthread_create(&replier, NULL, replier_main, rt) == 0);

    pthread_barrier_t start;
    CHECK(pthread_barrier_init(&start, NULL, NTHREADS + 1) == 0);
    static caller_arg args[NTHREADS];
    pthread_t th[NTHREADS];
    for (unsigned t = 0; t < NTHREADS; t++) {
        args[t] = (caller_arg){.rt = rt, .start = &start, .idx = t, .late = late,
                               .quick = quick};
        CHECK(pthread_create(&th[t], NULL, caller_main, &args[t]) == 0);
    }
    double t0 = stress_now_s();
    pthread_barrier_wait(&start);
    for (unsigned t = 0; t < NTHREADS; t++)
        CHECK(pthread_join(th[t], NULL) == 0);
    double t1 = stress_now_s();

    /* Every late request still in the late server's mailbox is handled
     * before this call (FIFO); then the replier drains its queue. */
    CHECK_RC(gs_call(rt, late, TAG_SYNC, NULL, 0, NULL, 0, NULL, CALL_TIMEOUT_MS), GS_OK);
    pthread_mutex_lock(&g_q.mu);
    g_q.done = true;
    pthread_cond_signal(&g_q.cv);
    pthread_mutex_unlock(&g_q.mu);
    CHECK(pthread_join(replier, NULL) == 0);

    /* Exact accounting. */
    uint64_t late_ok = 0, late_to = 0, quick_ok = 0, quick_to = 0, small = 0;
    uint64_t echo_sent[NECHO] = {0}, relay_to[NECHO] = {0}, relays = 0;
    for (unsigned t = 0; t < NTHREADS; t++) {
        late_ok += args[t].late_ok;
        late_to += args[t].late_timedout;
        quick_ok += args[t].quick_ok;
        quick_to += args[t].quick_timedout;
        small += args[t].small_buf;
        for (int k = 0; k < NECHO; k++) {
            echo_sent[k] += args[t].echo_sent[k];
            relay_to[k] += args[t].relay_to[k];
            relays += args[t].relay_to[k];
        }
    }
    for (int k = 0; k < NECHO; k++) {
        echo_stats st;
        CHECK_RC(gs_call(rt, g_echo[k], TAG_STATS, NULL, 0, &st, sizeof st, NULL,
                         CALL_TIMEOUT_MS),
                 GS_OK);
        CHECK(st.bad == 0);
        CHECKF(st.from_outside == echo_sent[k],
               "echo %d handled %llu outside calls, %llu made", k,
               (unsigned long long)st.from_outside, (unsigned long long)echo_sent[k]);
        CHECKF(st.from_relay == relay_to[k], "echo %d handled %llu relay calls, %llu made", k,
               (unsigned long long)st.from_relay, (unsigned long long)relay_to[k]);
    }
    echo_stats qs;
    CHECK_RC(gs_call(rt, quick, TAG_STATS, NULL, 0, &qs, sizeof qs, NULL, CALL_TIMEOUT_MS),
             GS_OK);
    CHECK(qs.bad == 0 && qs.from_relay == 0);
    CHECK(qs.from_outside >= quick_ok && qs.from_outside <= quick_ok + quick_to);

    uint64_t handled = atomic_load(&g_late_handled);
    uint64_t rok = atomic_load(&g_replies_ok), rgone = atomic_load(&g_replies_gone);
    uint64_t rinline = atomic_load(&g_replies_inline);
    /* Every call that returned GS_OK got a reply that said GS_OK; replies
     * from another thread say GS_OK exactly when they reached a caller. */
    CHECKF(late_ok >= rok && late_ok <= rok + rinline,
           "%llu late calls returned GS_OK; replies that reached a caller: %llu from another thread, "
           "at most %llu from handle_call",
           (unsigned long long)late_ok, (unsigned long long)rok, (unsigned long long)rinline);
    CHECKF(rok + rgone + rinline == handled, "%llu late requests handled, %llu replies given",
           (unsigned long long)handled, (unsigned long long)(rok + rgone + rinline));
    CHECK(handled <= late_ok + late_to);

    CHECK_RC(gs_runtime_stop(rt), GS_OK);
    free(g_q.items);
    CHECKF(atomic_load(&g_log_errors) == 0, "%llu error lines logged",
           (unsigned long long)atomic_load(&g_log_errors));

    printf("stress_call: OK: %d calls in %.2f s (echo %llu incl. %llu short-buffer, relay %llu, "
           "late %llu ok / %llu timed out, quick %llu ok / %llu timed out), no reply crossed\n",
           NTHREADS * ITERS, t1 - t0,
           (unsigned long long)(echo_sent[0] + echo_sent[1]), (unsigned long long)small,
           (unsigned long long)relays, (unsigned long long)late_ok, (unsigned long long)late_to,
           (unsigned long long)quick_ok, (unsigned long long)quick_to);
    return 0;
}
