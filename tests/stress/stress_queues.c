/* stress_queues.c - ThreadSanitizer stress of the lock-free structures in
 * src/queue: mailbox, injectq, runq, idxstack.
 *
 * Plain main (TSan cannot start Criterion binaries). Every scenario keeps
 * exact accounting and also hands plain (non-atomic) payload from thread to
 * thread through the structure, so TSan reports a data race if a
 * structure's memory ordering does not give the happens-before it claims.
 * A failed check prints the reason and exits 1; a watchdog turns a hang
 * into exit 2. Correctness never depends on timing.
 *
 * Scenarios:
 *   mailbox/fixed    4 producers, the main thread consumes, runs only when a
 *                    push returned true (exactly-once scheduling, per-producer
 *                    FIFO, every node freed once)
 *   mailbox/roaming  4 producers; the producer whose push returned true
 *                    becomes the consumer (as a worker would): consumer
 *                    state and frees move between threads through the idle
 *                    bit alone
 *   injectq          4 producers, 2 consumers sharing the try-lock token,
 *                    consumers push nodes back at once
 *   injectq/near-empty  one node per producer, re-pushed once popped: the
 *                    stub re-insertion races with pushes all the time
 *   runq             owner pushes/pops/LIFO-slot/take_half, 2 thieves steal
 *                    from it and from each other
 *   idxstack         4 threads cycling a pool of 64 indices (two in runs)
 */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "queue/idxstack.h"
#include "queue/injectq.h"
#include "queue/mailbox.h"
#include "queue/runq.h"

#define CHECKF(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            fflush(stderr);                                                                        \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)
#define CHECK(cond) CHECKF(cond, "%s", "")

static void start_threads(pthread_t *th, int n, void *(*fn)(void *))
{
    for (intptr_t i = 0; i < n; i++)
        CHECKF(pthread_create(&th[i], NULL, fn, (void *)i) == 0, "pthread_create");
}

static void join_threads(pthread_t *th, int n)
{
    for (int i = 0; i < n; i++)
        CHECK(pthread_join(th[i], NULL) == 0);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_alarm(int sig)
{
    static const char m[] = "stress_queues: watchdog: a scenario hung\n";
    (void)sig;
    (void)!write(2, m, sizeof m - 1);
    _exit(2);
}

/* ========================================================================
 * mailbox
 * ======================================================================== */

enum { MB_PRODUCERS = 4, MB_PER_PRODUCER = 120000 };

typedef struct msg {
    mbox_node node;
    uint32_t producer; /* plain payload: published by the link store */
    uint32_t seq;
    uint64_t check;
} msg;

#define MSG_OF(n) ((msg *)((char *)(n) - offsetof(msg, node)))

static uint64_t msg_check(uint32_t p, uint32_t s)
{
    return ((uint64_t)p << 32 | s) * 0x9e3779b97f4a7c15ull;
}

static struct {
    mailbox mb;
    atomic_bool go;
    atomic_uint trues;
    atomic_uint idle_bound; /* successful idles + the one in flight */
    atomic_uint producer_violations;
    atomic_uint producers_done;
    /* roaming mode: the consumer's state, plain memory handed from
     * consumer to consumer by the mailbox's idle/schedule protocol */
    bool roaming;
    atomic_bool in_consumer;
    atomic_uint two_consumers;
    uint32_t next_seq[MB_PRODUCERS];
    unsigned received, freed, fifo_violations, bad_payload, successes, failed_idles;
} mbx;

/* One consumer run: pop everything, then try to go idle; repeat while
 * try_idle fails. Plain state: only the (single) consumer touches it. */
static void mb_consume_run(void)
{
    /* Tripwire only (the run is guarded by the mailbox protocol alone):
     * set while this thread is the consumer, cleared before the CAS that
     * may let the next consumer start. */
    if (atomic_exchange(&mbx.in_consumer, true))
        atomic_fetch_add(&mbx.two_consumers, 1);
    for (;;) {
        mbox_node *retired, *n;
        while ((n = mailbox_pop(&mbx.mb, &retired)) != NULL) {
            if (retired != NULL) {
                free(MSG_OF(retired));
                mbx.freed++;
            }
            msg *m = MSG_OF(n);
            if (m->producer >= MB_PRODUCERS || m->check != msg_check(m->producer, m->seq)) {
                mbx.bad_payload++;
            } else {
                if (m->seq != mbx.next_seq[m->producer])
                    mbx.fifo_violations++;
                mbx.next_seq[m->producer] = m->seq + 1;
            }
            mbx.received++;
        }
        atomic_fetch_add(&mbx.idle_bound, 1);
        /* Count before the CAS: after it, the next consumer may run. */
        mbx.successes++;
        atomic_store(&mbx.in_consumer, false);
        if (mailbox_try_idle(&mbx.mb))
            return;
        if (atomic_exchange(&mbx.in_consumer, true))
            atomic_fetch_add(&mbx.two_consumers, 1);
        mbx.successes--;
        atomic_fetch_sub(&mbx.idle_bound, 1);
        mbx.failed_idles++;
        sched_yield(); /* a producer is half-way: run again */
    }
}

static void *mb_producer(void *arg)
{
    uint32_t p = (uint32_t)(intptr_t)arg;
    while (!atomic_load(&mbx.go))
        sched_yield();
    for (uint32_t i = 0; i < MB_PER_PRODUCER; i++) {
        msg *m = malloc(sizeof *m);
        CHECK(m != NULL);
        m->producer = p;
        m->seq = i;
        m->check = msg_check(p, i);
        if (mailbox_push(&mbx.mb, &m->node)) {
            unsigned t = atomic_fetch_add(&mbx.trues, 1) + 1;
            if (t > atomic_load(&mbx.idle_bound))
                atomic_fetch_add(&mbx.producer_violations, 1);
            if (mbx.roaming)
                mb_consume_run(); /* told to schedule the consumer: run it here */
        }
        if ((i & 63) == 0)
            sched_yield();
    }
    atomic_fetch_add(&mbx.producers_done, 1);
    return NULL;
}

static void mailbox_scenario(bool roaming)
{
    double t0 = now_s();
    memset(&mbx, 0, sizeof mbx);
    mailbox_init(&mbx.mb);
    mbx.roaming = roaming;
    const unsigned total = MB_PRODUCERS * MB_PER_PRODUCER;

    pthread_t th[MB_PRODUCERS];
    start_threads(th, MB_PRODUCERS, mb_producer);
    unsigned consumed_tokens = 0, true_while_scheduled = 0, extra_trues = 0;
    if (roaming) {
        /* Leave the initial "scheduled" state: from now on only a `true`
         * push runs the consumer. */
        mb_consume_run();
        atomic_store(&mbx.go, true);
        join_threads(th, MB_PRODUCERS);
    } else {
        atomic_store(&mbx.go, true);
        bool scheduled = true;
        for (;;) {
            if (!scheduled) {
                while (atomic_load(&mbx.trues) == consumed_tokens)
                    sched_yield();
                consumed_tokens++;
                scheduled = true;
            }
            if (atomic_load(&mbx.trues) != consumed_tokens)
                true_while_scheduled++;
            unsigned before = mbx.successes;
            mb_consume_run();
            CHECK(mbx.successes == before + 1);
            if (atomic_load(&mbx.trues) > mbx.successes)
                extra_trues++;
            scheduled = false;
            if (mbx.received == total)
                break;
        }
        join_threads(th, MB_PRODUCERS);
    }
    /* Quiescent. The consumer is idle; every run ended with a successful
     * try_idle, and every run but the first was started by exactly one
     * `true`. */
    unsigned trues = atomic_load(&mbx.trues);
    CHECKF(mbx.received == total, "received %u of %u", mbx.received, total);
    CHECKF(mbx.bad_payload == 0, "%u messages with a torn or foreign payload", mbx.bad_payload);
    CHECKF(mbx.fifo_violations == 0, "per-producer FIFO broken %u times", mbx.fifo_violations);
    for (int p = 0; p < MB_PRODUCERS; p++)
        CHECKF(mbx.next_seq[p] == MB_PER_PRODUCER, "producer %d ended at %u", p, mbx.next_seq[p]);
    CHECKF(atomic_load(&mbx.producer_violations) == 0, "a push returned true with no idle before it");
    CHECKF(atomic_load(&mbx.two_consumers) == 0, "two threads ran the consumer at once");
    CHECKF(true_while_scheduled == 0, "a push returned true while the consumer was scheduled");
    CHECKF(extra_trues == 0, "two trues in one idle period");
    CHECKF(trues + 1 == mbx.successes, "trues=%u successful idles=%u", trues, mbx.successes);
    if (!roaming)
        CHECK(consumed_tokens == trues);
    /* Idle now: a push must be told to schedule. */
    msg *last = malloc(sizeof *last);
    CHECK(last != NULL);
    last->producer = 0;
    last->seq = MB_PER_PRODUCER;
    last->check = msg_check(0, MB_PER_PRODUCER);
    CHECKF(mailbox_push(&mbx.mb, &last->node), "idle mailbox: push must return true");
    mb_consume_run();
    CHECK(mbx.received == total + 1);
    mbox_node *t = mailbox_tail_node(&mbx.mb);
    CHECK(t == &last->node);
    free(last);
    mbx.freed++;
    CHECKF(mbx.freed == total + 1, "freed %u of %u", mbx.freed, total + 1);
    printf("mailbox/%s: %u msgs, %u idle periods, %u failed try_idle, %.2fs\n",
           roaming ? "roaming" : "fixed", total, mbx.successes, mbx.failed_idles, now_s() - t0);
}

/* ========================================================================
 * injectq
 * ======================================================================== */

enum { IQ_PRODUCERS = 4, IQ_CONSUMERS = 2, IQ_PER_PRODUCER = 50000, IQ_HOPS = 3 };
enum { IQ_ITEMS = IQ_PRODUCERS * IQ_PER_PRODUCER };

typedef struct iq_item {
    mbox_node node;
    uint32_t id;
    uint32_t stamp; /* plain: written by the pusher, read by the popper */
    atomic_uint pops;
} iq_item;

static struct {
    injectq q;
    iq_item items[IQ_ITEMS];
    uint32_t last_id[IQ_PRODUCERS]; /* guarded by the token */
    atomic_uint finished, pops_total, bad_node, bad_stamp, lock_violation, order_violation, in_lock;
    atomic_uint producers_done;
    atomic_bool go;
} iq;

static void *iq_producer(void *arg)
{
    uint32_t p = (uint32_t)(intptr_t)arg;
    while (!atomic_load(&iq.go))
        sched_yield();
    for (uint32_t i = 0; i < IQ_PER_PRODUCER; i++) {
        iq_item *it = &iq.items[p * IQ_PER_PRODUCER + i];
        it->stamp = 0;
        injectq_push(&iq.q, &it->node);
        if ((i & 255) == 0)
            sched_yield();
    }
    atomic_fetch_add(&iq.producers_done, 1);
    return NULL;
}

static void *iq_consumer(void *unused)
{
    (void)unused;
    while (!atomic_load(&iq.go))
        sched_yield();
    while (atomic_load(&iq.finished) < IQ_ITEMS) {
        if (!injectq_try_lock(&iq.q)) {
            sched_yield();
            continue;
        }
        if (atomic_fetch_add(&iq.in_lock, 1) != 0)
            atomic_fetch_add(&iq.lock_violation, 1);
        for (int k = 0; k < 64; k++) {
            mbox_node *n = injectq_pop(&iq.q);
            if (n == NULL)
                break;
            if (n == &iq.q.stub || n < &iq.items[0].node || n > &iq.items[IQ_ITEMS - 1].node) {
                atomic_fetch_add(&iq.bad_node, 1);
                continue;
            }
            iq_item *it = (iq_item *)((char *)n - offsetof(iq_item, node));
            unsigned pops = atomic_fetch_add(&it->pops, 1) + 1;
            atomic_fetch_add(&iq.pops_total, 1);
            if (it->stamp != pops - 1)
                atomic_fetch_add(&iq.bad_stamp, 1);
            if (pops == 1) {
                uint32_t p = it->id / IQ_PER_PRODUCER;
                if (iq.last_id[p] != UINT32_MAX && it->id <= iq.last_id[p])
                    atomic_fetch_add(&iq.order_violation, 1);
                iq.last_id[p] = it->id;
            }
            if (pops <= IQ_HOPS) {
                it->stamp = pops;
                injectq_push(&iq.q, n); /* fully unlinked: push back at once */
            } else {
                atomic_fetch_add(&iq.finished, 1);
            }
        }
        atomic_fetch_sub(&iq.in_lock, 1);
        injectq_unlock(&iq.q);
    }
    return NULL;
}

static void injectq_scenario(void)
{
    double t0 = now_s();
    memset(&iq, 0, sizeof iq);
    injectq_init(&iq.q);
    for (uint32_t i = 0; i < IQ_ITEMS; i++) {
        iq.items[i].id = i;
        atomic_init(&iq.items[i].pops, 0);
    }
    for (int p = 0; p < IQ_PRODUCERS; p++)
        iq.last_id[p] = UINT32_MAX;
    pthread_t prod[IQ_PRODUCERS], cons[IQ_CONSUMERS];
    start_threads(prod, IQ_PRODUCERS, iq_producer);
    start_threads(cons, IQ_CONSUMERS, iq_consumer);
    atomic_store(&iq.go, true);
    join_threads(prod, IQ_PRODUCERS);
    join_threads(cons, IQ_CONSUMERS);

    CHECKF(atomic_load(&iq.bad_node) == 0, "the stub or a foreign node was popped");
    CHECKF(atomic_load(&iq.lock_violation) == 0, "two consumers held the token");
    CHECKF(atomic_load(&iq.order_violation) == 0, "per-producer FIFO broken");
    CHECKF(atomic_load(&iq.bad_stamp) == 0, "%u nodes popped with a stale stamp", atomic_load(&iq.bad_stamp));
    for (uint32_t i = 0; i < IQ_ITEMS; i++)
        CHECKF(atomic_load(&iq.items[i].pops) == IQ_HOPS + 1, "node %u popped %u times", i,
               atomic_load(&iq.items[i].pops));
    CHECK(atomic_load(&iq.pops_total) == IQ_ITEMS * (IQ_HOPS + 1));
    CHECK(injectq_try_lock(&iq.q));
    CHECK(injectq_pop(&iq.q) == NULL);
    injectq_unlock(&iq.q);
    CHECK(!injectq_maybe_nonempty(&iq.q));
    printf("injectq: %u nodes x %u pops, %.2fs\n", IQ_ITEMS, IQ_HOPS + 1, now_s() - t0);
}


/* Near-empty injectq: each producer owns one node and pushes it again only
 * after it was popped, so nearly every pop takes the stub re-insertion path
 * while producers race it. A lost node trips the deadline. */
enum { NE_PRODUCERS = 4, NE_CONSUMERS = 2, NE_ROUNDS = 60000 };

static struct {
    injectq q;
    iq_item node[NE_PRODUCERS];
    atomic_uint popped[NE_PRODUCERS];
    atomic_uint total, bad_node, double_pop, bad_stamp;
    atomic_bool go, stop;
} ne;

static void *ne_producer(void *arg)
{
    uint32_t p = (uint32_t)(intptr_t)arg;
    while (!atomic_load(&ne.go))
        sched_yield();
    for (unsigned r = 0; r < NE_ROUNDS; r++) {
        ne.node[p].stamp = r; /* plain: published by the push */
        injectq_push(&ne.q, &ne.node[p].node);
        while (atomic_load(&ne.popped[p]) == r) {
            if (atomic_load(&ne.stop))
                return NULL;
            sched_yield();
        }
    }
    return NULL;
}

static void *ne_consumer(void *unused)
{
    (void)unused;
    while (!atomic_load(&ne.go))
        sched_yield();
    while (atomic_load(&ne.total) < NE_PRODUCERS * NE_ROUNDS && !atomic_load(&ne.stop)) {
        if (!injectq_try_lock(&ne.q)) {
            sched_yield();
            continue;
        }
        mbox_node *n = injectq_pop(&ne.q);
        injectq_unlock(&ne.q);
        if (n == NULL) {
            sched_yield();
            continue;
        }
        if (n < &ne.node[0].node || n > &ne.node[NE_PRODUCERS - 1].node) {
            atomic_fetch_add(&ne.bad_node, 1);
            continue;
        }
        iq_item *it = (iq_item *)((char *)n - offsetof(iq_item, node));
        unsigned pops = atomic_fetch_add(&it->pops, 1);
        if (it->stamp != pops)
            atomic_fetch_add(&ne.bad_stamp, 1);
        unsigned r = atomic_fetch_add(&ne.popped[it->id], 1);
        if (pops != r)
            atomic_fetch_add(&ne.double_pop, 1);
        atomic_fetch_add(&ne.total, 1);
    }
    return NULL;
}

static void injectq_near_empty_scenario(void)
{
    double t0 = now_s();
    memset(&ne, 0, sizeof ne);
    injectq_init(&ne.q);
    for (uint32_t i = 0; i < NE_PRODUCERS; i++)
        ne.node[i].id = i;
    pthread_t prod[NE_PRODUCERS], cons[NE_CONSUMERS];
    start_threads(prod, NE_PRODUCERS, ne_producer);
    start_threads(cons, NE_CONSUMERS, ne_consumer);
    atomic_store(&ne.go, true);
    struct timespec ms = {0, 1000000};
    /* Give up after 20 s without progress: a node was lost. (A producer
     * preempted between its exchange and its link stalls every consumer
     * until it runs again; on a loaded 2-core machine under TSan that can
     * take seconds, so the limit is generous.) */
    unsigned seen = 0;
    double last_progress = now_s();
    while (atomic_load(&ne.total) < NE_PRODUCERS * NE_ROUNDS && now_s() - last_progress < 20) {
        nanosleep(&ms, NULL);
        unsigned t = atomic_load(&ne.total);
        if (t != seen) {
            seen = t;
            last_progress = now_s();
        }
    }
    if (atomic_load(&ne.total) < NE_PRODUCERS * NE_ROUNDS) {
        fprintf(stderr, "injectq near-empty stalled: head=%p tail=%p stub=%p stub.next=%p\n",
                (void *)atomic_load(&ne.q.head), (void *)atomic_load(&ne.q.tail), (void *)&ne.q.stub,
                (void *)atomic_load(&ne.q.stub.next));
        for (int i = 0; i < NE_PRODUCERS; i++)
            fprintf(stderr, "  node %d at %p: next=%p popped=%u\n", i, (void *)&ne.node[i].node,
                    (void *)atomic_load(&ne.node[i].node.next), atomic_load(&ne.popped[i]));
    }
    atomic_store(&ne.stop, true);
    join_threads(prod, NE_PRODUCERS);
    join_threads(cons, NE_CONSUMERS);
    CHECKF(atomic_load(&ne.bad_node) == 0, "the stub or a foreign node was popped");
    CHECKF(atomic_load(&ne.double_pop) == 0, "a node popped twice for one push");
    CHECKF(atomic_load(&ne.bad_stamp) == 0, "a node popped with a stale stamp");
    for (int i = 0; i < NE_PRODUCERS; i++)
        CHECKF(atomic_load(&ne.popped[i]) == NE_ROUNDS, "producer %d: %u of %u pushes popped (node lost)", i,
               atomic_load(&ne.popped[i]), NE_ROUNDS);
    CHECK(injectq_try_lock(&ne.q));
    CHECK(injectq_pop(&ne.q) == NULL);
    injectq_unlock(&ne.q);
    CHECK(!injectq_maybe_nonempty(&ne.q));
    printf("injectq/near-empty: %u round trips, %.2fs\n", NE_PRODUCERS * NE_ROUNDS, now_s() - t0);
}

/* ========================================================================
 * runq
 * ======================================================================== */

enum { RQ_ITEMS = 1000000, RQ_THIEVES = 2 };

static struct {
    runq owner_q;
    runq thief_q[RQ_THIEVES];
    uint64_t payload[RQ_ITEMS + 1]; /* plain: written before push, read by consumer */
    atomic_uchar count[RQ_ITEMS + 1];
    atomic_uint consumed_by[1 + RQ_THIEVES];
    atomic_uint bad_item, bad_payload, push_failed, steals;
    atomic_bool go, done;
} rq;

static uint64_t rq_val(uintptr_t id)
{
    return id * 0x2545f4914f6cdd1dull;
}

static void rq_consume(void *item, unsigned who)
{
    uintptr_t id = (uintptr_t)item;
    if (id == 0 || id > RQ_ITEMS) {
        atomic_fetch_add(&rq.bad_item, 1);
        return;
    }
    if (rq.payload[id] != rq_val(id))
        atomic_fetch_add(&rq.bad_payload, 1);
    atomic_fetch_add_explicit(&rq.count[id], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&rq.consumed_by[who], 1, memory_order_relaxed);
}

static void rq_owner_push(uintptr_t id)
{
    if (runq_push(&rq.owner_q, (void *)id))
        return;
    void *out[RUNQ_SIZE / 2 + 1];
    uint32_t n = runq_take_half(&rq.owner_q, out);
    for (uint32_t i = 0; i < n; i++)
        rq_consume(out[i], 0);
    if (!runq_push(&rq.owner_q, (void *)id))
        atomic_fetch_add(&rq.push_failed, 1);
}

static void *rq_owner(void *unused)
{
    (void)unused;
    while (!atomic_load(&rq.go))
        sched_yield();
    for (uintptr_t id = 1; id <= RQ_ITEMS; id++) {
        rq.payload[id] = rq_val(id);
        if (id % 5 == 0) {
            void *prev = runq_push_next(&rq.owner_q, (void *)id);
            if (prev != NULL)
                rq_owner_push((uintptr_t)prev);
        } else {
            rq_owner_push(id);
        }
        if (id % 16 == 0) {
            for (int k = 0; k < 5; k++) {
                void *it = runq_pop(&rq.owner_q, k & 1);
                if (it != NULL)
                    rq_consume(it, 0);
            }
        }
        if (id % 128 == 0)
            sched_yield();
    }
    void *it;
    while ((it = runq_pop(&rq.owner_q, false)) != NULL)
        rq_consume(it, 0);
    atomic_store(&rq.done, true);
    return NULL;
}

static void *rq_thief(void *arg)
{
    unsigned me = (unsigned)(intptr_t)arg;
    runq *mine = &rq.thief_q[me];
    runq *other = &rq.thief_q[(me + 1) % RQ_THIEVES];
    while (!atomic_load(&rq.go))
        sched_yield();
    for (;;) {
        void *it;
        while ((it = runq_pop(mine, false)) != NULL)
            rq_consume(it, 1 + me);
        if (atomic_load(&rq.done))
            break;
        it = runq_steal(mine, &rq.owner_q);
        if (it == NULL)
            it = runq_steal(mine, other);
        if (it != NULL) {
            atomic_fetch_add(&rq.steals, 1);
            rq_consume(it, 1 + me);
        } else {
            sched_yield();
        }
    }
    return NULL;
}

static void runq_scenario(void)
{
    double t0 = now_s();
    memset(&rq, 0, sizeof rq);
    runq_init(&rq.owner_q);
    for (int i = 0; i < RQ_THIEVES; i++)
        runq_init(&rq.thief_q[i]);
    pthread_t owner, thieves[RQ_THIEVES];
    start_threads(&owner, 1, rq_owner);
    start_threads(thieves, RQ_THIEVES, rq_thief);
    atomic_store(&rq.go, true);
    join_threads(&owner, 1);
    join_threads(thieves, RQ_THIEVES);

    CHECKF(atomic_load(&rq.bad_item) == 0, "NULL or unknown item consumed");
    CHECKF(atomic_load(&rq.bad_payload) == 0, "item consumed with a stale payload");
    CHECKF(atomic_load(&rq.push_failed) == 0, "push failed after take_half");
    for (uint32_t i = 1; i <= RQ_ITEMS; i++)
        CHECKF(atomic_load(&rq.count[i]) == 1, "item %u consumed %u times", i, atomic_load(&rq.count[i]));
    unsigned total = 0;
    for (int i = 0; i <= RQ_THIEVES; i++)
        total += atomic_load(&rq.consumed_by[i]);
    CHECK(total == RQ_ITEMS);
    CHECK(!runq_maybe_nonempty(&rq.owner_q));
    printf("runq: %u items, owner %u, thieves %u/%u, %u steals, %.2fs\n", RQ_ITEMS,
           atomic_load(&rq.consumed_by[0]), atomic_load(&rq.consumed_by[1]), atomic_load(&rq.consumed_by[2]),
           atomic_load(&rq.steals), now_s() - t0);
}

/* ========================================================================
 * idxstack
 * ======================================================================== */

enum { IS_THREADS = 4, IS_POOL = 64, IS_ROUNDS = 200000, IS_HOLD_MAX = 8 };

static struct {
    idxstack s;
    _Atomic uint32_t link[IS_POOL];
    uint64_t data[IS_POOL]; /* plain: written by whoever holds the index */
    atomic_bool owned[IS_POOL];
    atomic_uint double_owner, lost_owner, bad_index, bad_data, pops_ok;
    atomic_bool go;
} ist;

static _Atomic uint32_t *ist_link(void *ctx, uint32_t idx)
{
    return &((_Atomic uint32_t *)ctx)[idx];
}

static void *ist_worker(void *arg)
{
    uint32_t me = (uint32_t)(intptr_t)arg;
    uint32_t seed = 0x9e3779b9u * (me + 1);
    bool in_runs = (me & 1) != 0; /* odd threads pop and push runs */
    uint32_t held[IS_HOLD_MAX];
    while (!atomic_load(&ist.go))
        sched_yield();
    for (int r = 0; r < IS_ROUNDS; r++) {
        seed = seed * 1664525u + 1013904223u;
        unsigned want = 1 + (seed >> 28) % IS_HOLD_MAX;
        unsigned n = 0;
        uint32_t got[IS_HOLD_MAX];
        uint32_t ngot = in_runs ? idxstack_pop_many(&ist.s, got, want, ist_link, ist.link) : 0, used = 0;
        while (n < want) {
            uint32_t idx;
            if (in_runs) {
                if (used >= ngot)
                    break;
                idx = got[used++];
            } else if (!idxstack_pop(&ist.s, &idx, ist_link, ist.link)) {
                break;
            }
            if (idx >= IS_POOL) {
                atomic_fetch_add(&ist.bad_index, 1);
                continue;
            }
            if (atomic_exchange_explicit(&ist.owned[idx], true, memory_order_relaxed))
                atomic_fetch_add(&ist.double_owner, 1);
            /* The previous holder left data[idx] = (idx << 32) | tag. */
            if ((ist.data[idx] >> 32) != idx)
                atomic_fetch_add(&ist.bad_data, 1);
            ist.data[idx] = (uint64_t)idx << 32 | (me << 24) | (uint32_t)(r & 0xffffff);
            held[n++] = idx;
        }
        atomic_fetch_add_explicit(&ist.pops_ok, n, memory_order_relaxed);
        if ((r & 127) == 0)
            sched_yield();
        uint32_t order[IS_HOLD_MAX];
        for (unsigned k = 0; k < n; k++) {
            uint32_t idx = order[k] = held[(k + (seed & 7)) % n];
            if (!atomic_exchange_explicit(&ist.owned[idx], false, memory_order_relaxed))
                atomic_fetch_add(&ist.lost_owner, 1);
            if (!in_runs)
                idxstack_push(&ist.s, idx, ist_link, ist.link);
        }
        if (in_runs && n > 0)
            idxstack_push_many(&ist.s, order, n, ist_link, ist.link);
    }
    return NULL;
}

static void idxstack_scenario(void)
{
    double t0 = now_s();
    memset(&ist, 0, sizeof ist);
    idxstack_init(&ist.s);
    for (uint32_t i = 0; i < IS_POOL; i++) {
        ist.data[i] = (uint64_t)i << 32;
        idxstack_push(&ist.s, i, ist_link, ist.link);
    }
    pthread_t th[IS_THREADS];
    start_threads(th, IS_THREADS, ist_worker);
    atomic_store(&ist.go, true);
    join_threads(th, IS_THREADS);

    CHECK(atomic_load(&ist.bad_index) == 0);
    CHECKF(atomic_load(&ist.double_owner) == 0, "an index was held by two threads at once");
    CHECK(atomic_load(&ist.lost_owner) == 0);
    CHECKF(atomic_load(&ist.bad_data) == 0, "entry data not handed over");
    unsigned seen[IS_POOL] = {0};
    unsigned n = 0;
    uint32_t idx;
    while (idxstack_pop(&ist.s, &idx, ist_link, ist.link)) {
        CHECK(idx < IS_POOL);
        seen[idx]++;
        CHECKF(++n <= IS_POOL, "more entries than the pool: a cycle or a duplicate");
    }
    for (uint32_t i = 0; i < IS_POOL; i++)
        CHECKF(seen[i] == 1, "index %u present %u times", i, seen[i]);
    printf("idxstack: %u pops over %d threads, %.2fs\n", atomic_load(&ist.pops_ok), IS_THREADS,
           now_s() - t0);
}

int main(void)
{
    signal(SIGALRM, on_alarm);
    alarm(120);
    setvbuf(stdout, NULL, _IOLBF, 0);
    double t0 = now_s();
    mailbox_scenario(false);
    mailbox_scenario(true);
    injectq_scenario();
    injectq_near_empty_scenario();
    runq_scenario();
    idxstack_scenario();
    printf("stress_queues: all passed in %.2fs\n", now_s() - t0);
    return 0;
}
