/* micro_queues.c - micro-benchmarks of the runtime's internal queues
 * (the headers in src/queue), in nanoseconds per operation.
 *
 *   micro_queues [--quick] [NAME ...]     (no NAME: all; --list: names)
 *
 * One JSON line per benchmark, "runtime":"genserver-micro", with
 * "workload" the benchmark's name, "threads", "ops" (what one op is is
 * said in "op"), "seconds", "ns_per_op" and "check". Unlike gsbench this
 * program includes internal headers: it measures the building blocks,
 * not the API.
 *
 * Threads are plain pthreads, which spin when they find nothing to do:
 * on a machine with fewer cores than threads the contended figures mostly
 * measure the OS scheduler (say so when reading them).
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "queue/idxstack.h"
#include "queue/injectq.h"
#include "queue/mailbox.h"
#include "queue/runq.h"
#include "queue/wheel.h"

static int64_t scale = 1; /* 100 with --quick */
static int failures;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void report(const char *name, int threads, const char *op, int64_t ops, int64_t ns, bool ok,
                   const char *extra)
{
    double s = (double)ns / 1e9;
    printf("{\"runtime\":\"genserver-micro\",\"workload\":\"%s\",\"threads\":%d,\"op\":\"%s\",\"ops\":%lld,"
           "\"seconds\":%.6g,\"ops_per_sec\":%.6g,\"ns_per_op\":%.4g%s%s,\"check\":\"%s\"}\n",
           name, threads, op, (long long)ops, s, s > 0 ? (double)ops / s : 0.0, ops ? (double)ns / (double)ops : 0.0,
           extra ? "," : "", extra ? extra : "", ok ? "ok" : "FAIL: count mismatch");
    fflush(stdout);
    if (!ok)
        failures++;
}

/* A message as the runtime has it: a node first, then the payload. */
typedef struct node {
    mbox_node n;
    int64_t value;
} node;

/* ---- mailbox, single thread ----------------------------------------- */

static void mailbox_push_pop(void)
{
    int64_t n = 20000000 / scale;
    enum { RING = 64 };
    node *nodes = calloc(RING, sizeof *nodes);
    mailbox mb;
    mailbox_init(&mb);
    int64_t sum = 0, t0 = now_ns();
    for (int64_t i = 0; i < n; i++) {
        node *x = &nodes[i % RING]; /* retired one pop after its own: reusable by now */
        x->value = i;
        mailbox_push(&mb, &x->n);
        mbox_node *retired;
        node *y = (node *)mailbox_pop(&mb, &retired);
        sum += y->value;
    }
    int64_t ns = now_ns() - t0;
    report("mailbox_push_pop", 1, "push+pop", n, ns, sum == n * (n - 1) / 2, NULL);
    free(nodes);
}

static void mailbox_burst(void)
{
    enum { BURST = 1024 };
    int64_t rounds = 20000 / scale;
    node *nodes = calloc(BURST + 1, sizeof *nodes);
    mailbox mb;
    mailbox_init(&mb);
    int64_t got = 0, t0 = now_ns();
    uint32_t base = 0;
    for (int64_t r = 0; r < rounds; r++) {
        /* the node still held as the tail must not be pushed again: rotate
         * through BURST + 1 nodes */
        for (uint32_t i = 0; i < BURST; i++)
            mailbox_push(&mb, &nodes[(base + i) % (BURST + 1)].n);
        base = (base + BURST) % (BURST + 1);
        mbox_node *retired;
        while (mailbox_pop(&mb, &retired) != NULL)
            got++;
    }
    int64_t ns = now_ns() - t0;
    report("mailbox_burst", 1, "push (in bursts of 1024) + pop", rounds * BURST, ns, got == rounds * BURST, NULL);
    free(nodes);
}

/* ---- mailbox, contended --------------------------------------------- */

typedef struct mb_producer {
    pthread_t th;
    mailbox *mb;
    node *nodes;
    int64_t n;
    atomic_int *go;
} mb_producer;

static void *mb_producer_main(void *arg)
{
    mb_producer *p = arg;
    while (!atomic_load_explicit(p->go, memory_order_acquire))
        sched_yield();
    for (int64_t i = 0; i < p->n; i++)
        mailbox_push(p->mb, &p->nodes[i].n);
    return NULL;
}

static void mailbox_contended(int producers)
{
    int64_t per = 4000000 / scale;
    mailbox mb;
    mailbox_init(&mb);
    atomic_int go = 0;
    mb_producer ps[8];
    for (int i = 0; i < producers; i++) {
        ps[i] = (mb_producer){.mb = &mb, .nodes = calloc((size_t)per, sizeof(node)), .n = per, .go = &go};
        pthread_create(&ps[i].th, NULL, mb_producer_main, &ps[i]);
    }
    int64_t total = per * producers, got = 0, empty = 0;
    int64_t t0 = now_ns();
    atomic_store_explicit(&go, 1, memory_order_release);
    while (got < total) {
        mbox_node *retired;
        if (mailbox_pop(&mb, &retired) != NULL)
            got++;
        else if ((++empty & 63) == 0)
            sched_yield(); /* the producers may need this core */
    }
    int64_t ns = now_ns() - t0;
    for (int i = 0; i < producers; i++) {
        pthread_join(ps[i].th, NULL);
        free(ps[i].nodes);
    }
    char name[64], extra[64];
    snprintf(name, sizeof name, "mailbox_contended_%dp", producers);
    snprintf(extra, sizeof extra, "\"producers\":%d,\"empty_pops\":%lld", producers, (long long)empty);
    report(name, producers + 1, "message (push by a producer, pop by the consumer)", total, ns, got == total,
           extra);
}

/* ---- run queue ------------------------------------------------------- */

static void runq_push_pop(void)
{
    int64_t n = 20000000 / scale;
    static runq q;
    runq_init(&q);
    int64_t sum = 0, t0 = now_ns();
    for (int64_t i = 0; i < n; i++) {
        runq_push(&q, (void *)(uintptr_t)(i + 1));
        sum += (int64_t)(uintptr_t)runq_pop(&q, true) - 1;
    }
    int64_t ns = now_ns() - t0;
    report("runq_push_pop", 1, "push+pop (ring)", n, ns, sum == n * (n - 1) / 2, NULL);
}

static void runq_next_pop(void)
{
    int64_t n = 20000000 / scale;
    static runq q;
    runq_init(&q);
    int64_t sum = 0, t0 = now_ns();
    for (int64_t i = 0; i < n; i++) {
        void *old = runq_push_next(&q, (void *)(uintptr_t)(i + 1));
        if (old != NULL)
            runq_push(&q, old);
        sum += (int64_t)(uintptr_t)runq_pop(&q, false) - 1;
    }
    int64_t ns = now_ns() - t0;
    report("runq_next_pop", 1, "push_next+pop (LIFO slot)", n, ns, sum == n * (n - 1) / 2, NULL);
}

static void runq_steal_single(void)
{
    int64_t rounds = 400000 / scale;
    static runq victim, thief;
    runq_init(&victim);
    runq_init(&thief);
    int64_t moved = 0, t0 = now_ns();
    int64_t steal_ns = 0;
    for (int64_t r = 0; r < rounds; r++) {
        for (uintptr_t i = 1; i <= RUNQ_SIZE; i++)
            runq_push(&victim, (void *)i);
        int64_t s0 = now_ns();
        void *one = runq_steal(&thief, &victim);
        steal_ns += now_ns() - s0;
        moved += one != NULL;
        while (runq_pop(&thief, true) != NULL)
            moved++;
        while (runq_pop(&victim, true) != NULL) {
        }
    }
    int64_t ns = now_ns() - t0;
    (void)ns;
    char extra[96];
    snprintf(extra, sizeof extra, "\"items_per_steal\":%.1f,\"ns_per_item\":%.3g", (double)moved / (double)rounds,
             (double)steal_ns / (double)moved);
    report("runq_steal", 1, "steal of half a full ring (128 entries)", rounds, steal_ns,
           moved == rounds * (RUNQ_SIZE / 2), extra);
}

typedef struct steal_ctx {
    runq *victim, *thief;
    int64_t n;
    atomic_int done, go;
    int64_t stolen, owner_popped;
} steal_ctx;

static void *thief_main(void *arg)
{
    steal_ctx *c = arg;
    while (!atomic_load_explicit(&c->go, memory_order_acquire))
        sched_yield();
    int64_t stolen = 0, idle = 0;
    for (;;) {
        void *it = runq_steal(c->thief, c->victim);
        if (it != NULL) {
            stolen++;
            while (runq_pop(c->thief, true) != NULL)
                stolen++;
        } else if (atomic_load_explicit(&c->done, memory_order_acquire) && !runq_maybe_nonempty(c->victim)) {
            break;
        } else if ((++idle & 63) == 0) {
            sched_yield();
        }
    }
    c->stolen = stolen;
    return NULL;
}

static void runq_steal_contended(void)
{
    static runq victim, thief;
    runq_init(&victim);
    runq_init(&thief);
    steal_ctx c = {.victim = &victim, .thief = &thief, .n = 20000000 / scale};
    pthread_t th;
    pthread_create(&th, NULL, thief_main, &c);
    int64_t popped = 0, t0 = now_ns();
    atomic_store_explicit(&c.go, 1, memory_order_release);
    /* the owner pushes everything, and runs (pops) one entry in four */
    for (int64_t i = 0; i < c.n; i++) {
        while (!runq_push(&victim, (void *)(uintptr_t)(i + 1)))
            popped += runq_pop(&victim, true) != NULL;
        if ((i & 3) == 3)
            popped += runq_pop(&victim, true) != NULL;
    }
    while (runq_pop(&victim, true) != NULL)
        popped++;
    atomic_store_explicit(&c.done, 1, memory_order_release);
    pthread_join(th, NULL);
    int64_t ns = now_ns() - t0;
    char extra[96];
    snprintf(extra, sizeof extra, "\"stolen\":%lld,\"owner_popped\":%lld", (long long)c.stolen, (long long)popped);
    report("runq_steal_contended", 2, "entry (owner push, owner pop or thief steal)", c.n, ns,
           popped + c.stolen == c.n, extra);
}

/* ---- global injection queue ------------------------------------------ */

static void injectq_push_pop(void)
{
    int64_t n = 20000000 / scale;
    enum { RING = 64 };
    node *nodes = calloc(RING, sizeof *nodes);
    static injectq q;
    injectq_init(&q);
    int64_t got = 0, t0 = now_ns();
    for (int64_t i = 0; i < n; i++) {
        injectq_push(&q, &nodes[i % RING].n);
        if (injectq_try_lock(&q)) {
            got += injectq_pop(&q) != NULL;
            injectq_unlock(&q);
        }
    }
    int64_t ns = now_ns() - t0;
    report("injectq_push_pop", 1, "push+lock+pop+unlock", n, ns, got == n, NULL);
    free(nodes);
}

/* ---- index stack (the process table's free list) --------------------- */

enum { IDX_ENTRIES = 4096 };
static _Atomic uint32_t idx_links[IDX_ENTRIES];

static _Atomic uint32_t *idx_link(void *ctx, uint32_t idx)
{
    (void)ctx;
    return &idx_links[idx];
}

static void idxstack_single(void)
{
    int64_t n = 20000000 / scale;
    idxstack s;
    idxstack_init(&s);
    for (uint32_t i = 0; i < 16; i++)
        idxstack_push(&s, i, idx_link, NULL);
    int64_t ok = 0, t0 = now_ns();
    for (int64_t i = 0; i < n; i++) {
        uint32_t idx;
        if (idxstack_pop(&s, &idx, idx_link, NULL)) {
            ok++;
            idxstack_push(&s, idx, idx_link, NULL);
        }
    }
    int64_t ns = now_ns() - t0;
    report("idxstack_pop_push", 1, "pop+push", n, ns, ok == n, NULL);
}

typedef struct idx_ctx {
    idxstack *s;
    int64_t n, ok;
    atomic_int *go;
    pthread_t th;
} idx_ctx;

static void *idx_worker(void *arg)
{
    idx_ctx *c = arg;
    while (!atomic_load_explicit(c->go, memory_order_acquire))
        sched_yield();
    for (int64_t i = 0; i < c->n; i++) {
        uint32_t idx;
        if (idxstack_pop(c->s, &idx, idx_link, NULL)) {
            c->ok++;
            idxstack_push(c->s, idx, idx_link, NULL);
        }
    }
    return NULL;
}

static void idxstack_contended(int threads)
{
    idxstack s;
    idxstack_init(&s);
    for (uint32_t i = 0; i < IDX_ENTRIES; i++)
        idxstack_push(&s, i, idx_link, NULL);
    atomic_int go = 0;
    idx_ctx cs[8];
    for (int i = 0; i < threads; i++) {
        cs[i] = (idx_ctx){.s = &s, .n = 10000000 / scale, .go = &go};
        pthread_create(&cs[i].th, NULL, idx_worker, &cs[i]);
    }
    int64_t t0 = now_ns();
    atomic_store_explicit(&go, 1, memory_order_release);
    int64_t ok = 0, total = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(cs[i].th, NULL);
        ok += cs[i].ok;
        total += cs[i].n;
    }
    int64_t ns = now_ns() - t0;
    /* every pop must have succeeded, and all entries must be back */
    uint32_t idx;
    int64_t back = 0;
    while (idxstack_pop(&s, &idx, idx_link, NULL))
        back++;
    char name[64];
    snprintf(name, sizeof name, "idxstack_contended_%dt", threads);
    report(name, threads, "pop+push (wall time / all threads' ops)", total, ns, ok == total && back == IDX_ENTRIES,
           NULL);
}

/* ---- timer wheel ------------------------------------------------------
 * The wheel alone (src/queue/wheel.h), with the ticks the runtime uses
 * (1 ms): no clock, no timer thread, no timer records. Delays come from
 * the 32-bit LCG W7 uses (seed 42), 1..1000 ticks. */

static uint32_t lcg_state = 42;

static uint32_t lcg_delay(void)
{
    lcg_state = lcg_state * 1664525u + 1013904223u;
    return 1 + (lcg_state >> 8) % 1000;
}

/* Schedule + cancel: 1024 timers inserted at random deadlines, then all
 * removed, again and again (an op is one insert plus one remove). */
static void wheel_schedule_cancel(void)
{
    enum { BATCH = 1024 };
    int64_t rounds = 20000 / scale;
    wheel_timer *ts = calloc(BATCH, sizeof *ts);
    wheel *w = wheel_new(1000);
    lcg_state = 42;
    bool ok = true;
    int64_t t0 = now_ns();
    for (int64_t r = 0; r < rounds; r++) {
        for (unsigned i = 0; i < BATCH; i++)
            wheel_insert(w, &ts[i], w->now + lcg_delay());
        ok &= w->count == BATCH;
        for (unsigned i = 0; i < BATCH; i++)
            wheel_remove(w, &ts[i]);
    }
    int64_t ns = now_ns() - t0;
    ok &= w->count == 0 && wheel_next_tick(w) == UINT64_MAX;
    report("wheel_schedule_cancel", 1, "insert+remove (1024 pending at most)", rounds * BATCH, ns, ok, NULL);
    free(ts);
    wheel_free(w);
}

/* The same with 1,000,000 other timers pending: the cache sees a full
 * wheel, as in W7's set-up phase. */
static void wheel_schedule_cancel_full(void)
{
    enum { BATCH = 1024 };
    int64_t pending = 1000000 / scale, rounds = 20000 / scale;
    wheel_timer *bg = calloc((size_t)pending, sizeof *bg), *ts = calloc(BATCH, sizeof *ts);
    wheel *w = wheel_new(1000);
    lcg_state = 42;
    for (int64_t i = 0; i < pending; i++)
        wheel_insert(w, &bg[i], w->now + lcg_delay());
    bool ok = true;
    int64_t t0 = now_ns();
    for (int64_t r = 0; r < rounds; r++) {
        for (unsigned i = 0; i < BATCH; i++)
            wheel_insert(w, &ts[i], w->now + lcg_delay());
        for (unsigned i = 0; i < BATCH; i++)
            wheel_remove(w, &ts[i]);
    }
    int64_t ns = now_ns() - t0;
    ok &= w->count == (uint64_t)pending;
    char extra[64];
    snprintf(extra, sizeof extra, "\"pending\":%lld", (long long)pending);
    report("wheel_schedule_cancel_full", 1, "insert+remove beside `pending` others", rounds * BATCH, ns, ok, extra);
    free(bg);
    free(ts);
    wheel_free(w);
}

/* wheel_next_tick with 1,000,000 timers pending (what the timer thread
 * asks before it sleeps). Timed twice: with the earliest timer in level 0
 * (the common case) and with only far timers (levels 1 and up). */
static void wheel_next_tick_bench(void)
{
    int64_t pending = 1000000 / scale, n = 20000000 / scale;
    wheel_timer *ts = calloc((size_t)pending, sizeof *ts);
    wheel *w = wheel_new(1000);
    lcg_state = 42;
    uint64_t earliest = UINT64_MAX;
    for (int64_t i = 0; i < pending; i++) {
        /* past level 0 and 1 for the most part: 64..4,000,000 ticks */
        uint64_t d = w->now + 64 + (uint64_t)lcg_delay() * 4000;
        earliest = d < earliest ? d : earliest;
        wheel_insert(w, &ts[i], d);
    }
    uint64_t sum = 0, first = wheel_next_tick(w);
    int64_t t0 = now_ns();
    for (int64_t i = 0; i < n; i++)
        sum += wheel_next_tick(w);
    int64_t far_ns = now_ns() - t0;
    bool ok = first <= earliest && sum == first * (uint64_t)n;
    /* one near timer: the answer comes from level 0 */
    wheel_timer near;
    wheel_insert(w, &near, w->now + 5);
    uint64_t near_first = wheel_next_tick(w);
    sum = 0;
    t0 = now_ns();
    for (int64_t i = 0; i < n; i++)
        sum += wheel_next_tick(w);
    int64_t ns = now_ns() - t0;
    ok &= near_first == w->now + 5 && sum == near_first * (uint64_t)n;
    char extra[96];
    snprintf(extra, sizeof extra, "\"pending\":%lld,\"far_only_ns_per_op\":%.4g", (long long)pending,
             (double)far_ns / (double)n);
    report("wheel_next_tick", 1, "next-deadline query, `pending` timers (one due in 5 ticks)", n, ns, ok, extra);
    free(ts);
    wheel_free(w);
}

typedef struct fire_ctx {
    uint64_t fired, early, disorder, last;
    const wheel *w;
} fire_ctx;

static void count_fire(wheel_timer *t, void *arg)
{
    fire_ctx *c = arg;
    c->fired++;
    c->early += t->deadline > c->w->now;
    c->disorder += t->deadline < c->last;
    c->last = t->deadline;
}

/* Firing: 1,000,000 timers at 1..1000 ticks, then the clock advanced one
 * tick at a time to the last deadline, as the timer thread does; ns per
 * fired timer, cascades from level 1 included. Check: all fire, in
 * deadline order, none early. */
static void wheel_advance_bench(void)
{
    int64_t pending = 1000000 / scale;
    wheel_timer *ts = calloc((size_t)pending, sizeof *ts);
    wheel *w = wheel_new(1000);
    lcg_state = 42;
    for (int64_t i = 0; i < pending; i++)
        wheel_insert(w, &ts[i], w->now + lcg_delay());
    fire_ctx c = {.w = w};
    uint64_t end = w->now + 1000, advances = 0;
    int64_t t0 = now_ns();
    for (uint64_t tick = w->now + 1; tick <= end; tick++, advances++)
        wheel_advance(w, tick, count_fire, &c);
    int64_t ns = now_ns() - t0;
    bool ok = c.fired == (uint64_t)pending && c.early == 0 && c.disorder == 0 && w->count == 0;
    char extra[96];
    snprintf(extra, sizeof extra, "\"advances\":%llu,\"early\":%llu,\"out_of_order\":%llu",
             (unsigned long long)advances, (unsigned long long)c.early, (unsigned long long)c.disorder);
    report("wheel_advance", 1, "timer fired (all over 1000 ticks, advanced tick by tick)", (int64_t)c.fired, ns,
           ok, extra);
    free(ts);
    wheel_free(w);
}

/* Far timers: 1,000,000 armed at once, due within one 2^24-tick window
 * (4.7 hours of 1 ms ticks) just past a 2^30-tick boundary, the clock
 * then driven as an otherwise idle timer thread drives it: straight to
 * wheel_next_tick each time. What matters is the longest single advance:
 * the stall that everything due at that moment would see. (Before every
 * level took two blocks, these sat in one level-5 part and cascaded
 * whole when it came due.) ns_per_op: per timer, moves and firing. */
static void wheel_far_part(void)
{
    int64_t pending = 1000000 / scale;
    wheel_timer *ts = calloc((size_t)pending, sizeof *ts);
    wheel *w = wheel_new(1000);
    lcg_state = 42;
    uint64_t from = UINT64_C(1) << 30;
    for (int64_t i = 0; i < pending; i++) {
        lcg_state = lcg_state * 1664525u + 1013904223u;
        wheel_insert(w, &ts[i], from + (lcg_state >> 8) % (UINT64_C(1) << 24));
    }
    fire_ctx c = {.w = w};
    uint64_t visits = 0;
    int64_t longest = 0, total = 0;
    for (;;) {
        uint64_t next = wheel_next_tick(w);
        if (next == UINT64_MAX)
            break;
        int64_t t0 = now_ns();
        wheel_advance(w, next, count_fire, &c);
        int64_t d = now_ns() - t0;
        total += d;
        longest = d > longest ? d : longest;
        visits++;
    }
    bool ok = c.fired == (uint64_t)pending && c.early == 0 && c.disorder == 0 && w->count == 0;
    char extra[160];
    snprintf(extra, sizeof extra, "\"longest_advance_ns\":%lld,\"advances\":%llu,\"cascaded_when_due\":%llu",
             (long long)longest, (unsigned long long)visits, (unsigned long long)w->cascaded_when_due);
    report("wheel_far_part", 1, "timer moved down and fired (1M far timers, clock driven by next_tick)",
           (int64_t)c.fired, total, ok, extra);
    free(ts);
    wheel_free(w);
}

/* ---- driver --------------------------------------------------------- */

static void mailbox_contended_2p(void) { mailbox_contended(2); }
static void mailbox_contended_4p(void) { mailbox_contended(4); }
static void idxstack_contended_2t(void) { idxstack_contended(2); }

static const struct {
    const char *name;
    void (*run)(void);
} benches[] = {
    {"mailbox_push_pop", mailbox_push_pop},
    {"mailbox_burst", mailbox_burst},
    {"mailbox_contended_2p", mailbox_contended_2p},
    {"mailbox_contended_4p", mailbox_contended_4p},
    {"runq_push_pop", runq_push_pop},
    {"runq_next_pop", runq_next_pop},
    {"runq_steal", runq_steal_single},
    {"runq_steal_contended", runq_steal_contended},
    {"injectq_push_pop", injectq_push_pop},
    {"idxstack_pop_push", idxstack_single},
    {"idxstack_contended_2t", idxstack_contended_2t},
    {"wheel_schedule_cancel", wheel_schedule_cancel},
    {"wheel_schedule_cancel_full", wheel_schedule_cancel_full},
    {"wheel_next_tick", wheel_next_tick_bench},
    {"wheel_advance", wheel_advance_bench},
    {"wheel_far_part", wheel_far_part},
};
#define NBENCHES (sizeof benches / sizeof benches[0])

int main(int argc, char **argv)
{
    bool any = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            scale = 100;
        } else if (strcmp(argv[i], "--list") == 0) {
            for (size_t k = 0; k < NBENCHES; k++)
                printf("%s\n", benches[k].name);
            return 0;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: micro_queues [--quick] [--list] [NAME ...]\n");
            return 2;
        } else {
            any = true;
        }
    }
    for (size_t k = 0; k < NBENCHES; k++) {
        bool want = !any;
        for (int i = 1; i < argc; i++)
            if (strcmp(argv[i], benches[k].name) == 0)
                want = true;
        if (want)
            benches[k].run();
    }
    return failures ? 1 : 0;
}
