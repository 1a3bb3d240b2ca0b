/* test_injectq.c - unit tests of the global run queue (src/queue/injectq.c):
 * FIFO, popped nodes fully unlinked (re-pushable at once), the emptiness
 * hint around the stub re-insertion and half-done pushes, the try-lock,
 * and 4 producers against 2 lock-sharing consumers (every node popped
 * exactly once per push; consumers re-push some nodes at once).
 * Worker threads only record; the test thread asserts after joining.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "queue/injectq.h"

typedef struct item {
    mbox_node node;
    uint32_t id;
    uint32_t hops; /* times a consumer pushes it back (concurrent test) */
    atomic_uint pops;
} item;

#define ITEM_OF(n) ((item *)((char *)(n) - offsetof(item, node)))

static uint32_t pop_id(injectq *q)
{
    mbox_node *n = injectq_pop(q);
    cr_assert_not_null(n);
    cr_assert_neq(n, &q->stub, "the stub must never be returned");
    return ITEM_OF(n)->id;
}

/* The two steps of injectq_push, replayed by hand (white box) to freeze a
 * producer between its exchange and its link store. */
static mbox_node *half_push(injectq *q, mbox_node *n)
{
    atomic_store(&n->next, NULL);
    return atomic_exchange(&q->head, n);
}

static void finish_push(mbox_node *prev, mbox_node *n)
{
    atomic_store(&prev->next, n);
}

Test(injectq, fifo_single_thread, .timeout = 30)
{
    enum { N = 300 };
    static item it[N];
    static injectq q;
    injectq_init(&q);
    cr_assert_null(injectq_pop(&q));
    for (uint32_t i = 0; i < N; i++) {
        it[i].id = i;
        injectq_push(&q, &it[i].node);
    }
    for (uint32_t i = 0; i < N; i++)
        cr_assert_eq(pop_id(&q), i);
    cr_assert_null(injectq_pop(&q));
    cr_assert_not(injectq_maybe_nonempty(&q));
    /* Interleaved pushes and pops, emptying now and then. */
    uint32_t in = 0, out = 0;
    for (int round = 0; round < 500; round++) {
        for (int k = 0; k < 1 + round % 4 && in - out < N; k++) {
            it[in % N].id = in;
            injectq_push(&q, &it[in % N].node);
            in++;
        }
        for (int k = 0; k < 1 + (round * 3) % 5 && out < in; k++)
            cr_assert_eq(pop_id(&q), out++);
        cr_assert_eq(injectq_maybe_nonempty(&q), in != out, "round %d", round);
    }
    while (out < in)
        cr_assert_eq(pop_id(&q), out++);
    cr_assert_null(injectq_pop(&q));
}

Test(injectq, popped_node_is_fully_unlinked, .timeout = 30)
{
    static item a, b, c;
    static injectq q;
    a.id = 1;
    b.id = 2;
    c.id = 3;
    injectq_init(&q);

    /* The only node: pushed back at once, again and again. */
    for (int i = 0; i < 10; i++) {
        injectq_push(&q, &a.node);
        cr_assert_eq(pop_id(&q), 1);
        cr_assert_null(injectq_pop(&q));
    }
    /* Push a, b; pop a; push a again: the order is b, a. */
    injectq_push(&q, &a.node);
    injectq_push(&q, &b.node);
    cr_assert_eq(pop_id(&q), 1);
    injectq_push(&q, &a.node);
    cr_assert_eq(pop_id(&q), 2);
    injectq_push(&q, &b.node);
    injectq_push(&q, &c.node);
    cr_assert_eq(pop_id(&q), 1);
    injectq_push(&q, &a.node);
    cr_assert_eq(pop_id(&q), 2);
    cr_assert_eq(pop_id(&q), 3);
    cr_assert_eq(pop_id(&q), 1);
    cr_assert_null(injectq_pop(&q));
    cr_assert_not(injectq_maybe_nonempty(&q));
}

Test(injectq, maybe_nonempty_sequential, .timeout = 30)
{
    static item x, y, z;
    static injectq q;
    x.id = 1;
    y.id = 2;
    z.id = 3;
    injectq_init(&q);
    cr_assert_not(injectq_maybe_nonempty(&q), "fresh queue");

    injectq_push(&q, &x.node);
    cr_assert(injectq_maybe_nonempty(&q));
    cr_assert_eq(pop_id(&q), 1); /* re-inserts the stub behind x */
    cr_assert_eq(atomic_load(&q.head), &q.stub, "stub re-inserted");
    cr_assert_eq(atomic_load(&q.tail), &q.stub);
    cr_assert_not(injectq_maybe_nonempty(&q), "empty after the stub re-insertion");
    cr_assert_null(injectq_pop(&q));
    cr_assert_not(injectq_maybe_nonempty(&q));

    /* After the re-insertion, the stub is the tail again and must be
     * stepped over. */
    injectq_push(&q, &y.node);
    cr_assert(injectq_maybe_nonempty(&q));
    injectq_push(&q, &x.node);
    cr_assert_eq(pop_id(&q), 2);
    cr_assert(injectq_maybe_nonempty(&q), "x still queued (tail == head == x)");
    cr_assert_eq(pop_id(&q), 1);
    cr_assert_not(injectq_maybe_nonempty(&q));

    /* Half-done push into the empty queue: pop must wait, hint says
     * non-empty. */
    mbox_node *prev = half_push(&q, &z.node);
    cr_assert_eq(prev, &q.stub);
    cr_assert(injectq_maybe_nonempty(&q));
    cr_assert_null(injectq_pop(&q), "link pending");
    cr_assert(injectq_maybe_nonempty(&q));
    finish_push(prev, &z.node);
    cr_assert_eq(pop_id(&q), 3);
    cr_assert_not(injectq_maybe_nonempty(&q));

    /* Half-done push behind a real node: pop steps off the stub onto x,
     * then must stop (x is not the head yet its link is missing). */
    injectq_push(&q, &x.node);
    prev = half_push(&q, &y.node);
    cr_assert_eq(prev, &x.node);
    for (int i = 0; i < 3; i++)
        cr_assert_null(injectq_pop(&q), "x's link to y is pending (pop %d)", i);
    cr_assert_eq(atomic_load(&q.tail), &x.node, "stub left the queue");
    cr_assert_eq(atomic_load(&q.head), &y.node, "the stub must not be re-inserted before y is linked");
    cr_assert(injectq_maybe_nonempty(&q));
    finish_push(prev, &y.node);
    cr_assert_eq(pop_id(&q), 1);
    cr_assert(injectq_maybe_nonempty(&q));
    cr_assert_eq(pop_id(&q), 2);
    cr_assert_not(injectq_maybe_nonempty(&q));
    cr_assert_null(injectq_pop(&q));

    /* Half-done push after the stub has left, tail == the last real node:
     * head != tail so pop must not re-insert the stub yet. */
    injectq_push(&q, &x.node);
    injectq_push(&q, &y.node);
    cr_assert_eq(pop_id(&q), 1); /* tail = y = head */
    prev = half_push(&q, &z.node);
    cr_assert_eq(prev, &y.node);
    for (int i = 0; i < 3; i++)
        cr_assert_null(injectq_pop(&q));
    cr_assert_eq(atomic_load(&q.head), &z.node);
    cr_assert(injectq_maybe_nonempty(&q));
    finish_push(prev, &z.node);
    cr_assert_eq(pop_id(&q), 2);
    cr_assert_eq(pop_id(&q), 3);
    cr_assert_null(injectq_pop(&q));
    cr_assert_not(injectq_maybe_nonempty(&q));
}

Test(injectq, try_lock, .timeout = 30)
{
    static injectq q;
    injectq_init(&q);
    cr_assert(injectq_try_lock(&q));
    cr_assert_not(injectq_try_lock(&q));
    cr_assert_not(injectq_try_lock(&q));
    injectq_unlock(&q);
    cr_assert(injectq_try_lock(&q));
    injectq_unlock(&q);
}

/* ---- concurrent: 4 producers, 2 consumers sharing the token ------------ */

/* Waits until *count reaches want, at most 10 s; then raises *stop so the
 * worker threads give up (a lost node must fail the test, not hang it). */
static void wait_or_stop(atomic_uint *count, unsigned want, atomic_bool *stop)
{
    struct timespec ms = {0, 1000000};
    for (int i = 0; i < 10000 && atomic_load(count) < want; i++)
        nanosleep(&ms, NULL);
    atomic_store(stop, true);
}

enum { IC_PRODUCERS = 4, IC_CONSUMERS = 2, IC_PER_PRODUCER = 20000, IC_HOPS = 2 };
enum { IC_ITEMS = IC_PRODUCERS * IC_PER_PRODUCER };

typedef struct ic_shared {
    injectq q;
    item items[IC_ITEMS];
    uint32_t last_id[IC_PRODUCERS]; /* guarded by the token */
    atomic_uint finished; /* nodes popped for the last time */
    atomic_uint pops_total;
    atomic_uint bad_node;
    atomic_uint lock_violation;
    atomic_uint order_violation;
    atomic_uint in_lock; /* consumers inside the token: must stay <= 1 */
    atomic_bool go;
    atomic_bool stop; /* deadline passed: a node was lost, give up */
} ic_shared;

static ic_shared ic;

static void *ic_producer(void *arg)
{
    uint32_t p = (uint32_t)(uintptr_t)arg;
    while (!atomic_load(&ic.go))
        sched_yield();
    for (uint32_t i = 0; i < IC_PER_PRODUCER; i++) {
        injectq_push(&ic.q, &ic.items[p * IC_PER_PRODUCER + i].node);
        if ((i & 255) == 0)
            sched_yield();
    }
    return NULL;
}

static void *ic_consumer(void *unused)
{
    while (!atomic_load(&ic.go))
        sched_yield();
    while (atomic_load(&ic.finished) < IC_ITEMS && !atomic_load(&ic.stop)) {
        if (!injectq_try_lock(&ic.q)) {
            sched_yield();
            continue;
        }
        if (atomic_fetch_add(&ic.in_lock, 1) != 0)
            atomic_fetch_add(&ic.lock_violation, 1);
        for (int k = 0; k < 32; k++) {
            mbox_node *n = injectq_pop(&ic.q);
            if (n == NULL)
                break;
            if (n == &ic.q.stub || n < &ic.items[0].node || n > &ic.items[IC_ITEMS - 1].node) {
                atomic_fetch_add(&ic.bad_node, 1);
                continue;
            }
            item *it = ITEM_OF(n);
            unsigned pops = atomic_fetch_add(&it->pops, 1) + 1;
            atomic_fetch_add(&ic.pops_total, 1);
            if (pops == 1) {
                /* First pop: the producers' own order, FIFO per producer. */
                uint32_t p = it->id / IC_PER_PRODUCER;
                if (ic.last_id[p] != UINT32_MAX && it->id <= ic.last_id[p])
                    atomic_fetch_add(&ic.order_violation, 1);
                ic.last_id[p] = it->id;
            }
            if (pops <= IC_HOPS)
                injectq_push(&ic.q, n); /* re-push at once */
            else
                atomic_fetch_add(&ic.finished, 1);
        }
        atomic_fetch_sub(&ic.in_lock, 1);
        injectq_unlock(&ic.q);
    }
    return NULL;
}

Test(injectq, four_producers_two_consumers_each_once, .timeout = 30)
{
    memset(&ic, 0, sizeof ic);
    injectq_init(&ic.q);
    for (uint32_t i = 0; i < IC_ITEMS; i++) {
        ic.items[i].id = i;
        atomic_init(&ic.items[i].pops, 0);
    }
    for (int p = 0; p < IC_PRODUCERS; p++)
        ic.last_id[p] = UINT32_MAX;
    atomic_init(&ic.finished, 0);
    atomic_init(&ic.pops_total, 0);
    atomic_init(&ic.bad_node, 0);
    atomic_init(&ic.lock_violation, 0);
    atomic_init(&ic.order_violation, 0);
    atomic_init(&ic.in_lock, 0);
    atomic_init(&ic.go, false);
    atomic_init(&ic.stop, false);

    pthread_t prod[IC_PRODUCERS], cons[IC_CONSUMERS];
    for (uintptr_t i = 0; i < IC_PRODUCERS; i++)
        cr_assert_eq(pthread_create(&prod[i], NULL, ic_producer, (void *)i), 0);
    for (uintptr_t i = 0; i < IC_CONSUMERS; i++)
        cr_assert_eq(pthread_create(&cons[i], NULL, ic_consumer, (void *)i), 0);
    atomic_store(&ic.go, true);
    for (int i = 0; i < IC_PRODUCERS; i++)
        pthread_join(prod[i], NULL);
    wait_or_stop(&ic.finished, IC_ITEMS, &ic.stop);
    for (int i = 0; i < IC_CONSUMERS; i++)
        pthread_join(cons[i], NULL);

    cr_assert_eq(atomic_load(&ic.bad_node), 0, "the stub or a foreign node was popped");
    cr_assert_eq(atomic_load(&ic.lock_violation), 0, "two consumers inside the token");
    cr_assert_eq(atomic_load(&ic.order_violation), 0, "per-producer FIFO broken");
    unsigned bad = 0, first_bad = UINT32_MAX;
    for (uint32_t i = 0; i < IC_ITEMS; i++) {
        if (atomic_load(&ic.items[i].pops) != IC_HOPS + 1) {
            bad++;
            if (first_bad == UINT32_MAX)
                first_bad = i;
        }
    }
    cr_assert_eq(bad, 0, "%u nodes popped a wrong number of times (first %u: %u)", bad, first_bad,
                 first_bad == UINT32_MAX ? 0 : atomic_load(&ic.items[first_bad].pops));
    cr_assert_eq(atomic_load(&ic.pops_total), IC_ITEMS * (IC_HOPS + 1));
    cr_assert_eq(atomic_load(&ic.finished), IC_ITEMS);
    /* Quiescent: empty, and the hint agrees. */
    cr_assert(injectq_try_lock(&ic.q));
    cr_assert_null(injectq_pop(&ic.q));
    injectq_unlock(&ic.q);
    cr_assert_not(injectq_maybe_nonempty(&ic.q));
}

/* ---- concurrent, near-empty: every pop goes through the stub path ------ *
 * Each producer owns one node and pushes it again only after it was popped,
 * so the queue holds at most 4 nodes and the consumers keep hitting "tail is
 * the last node": the stub re-insertion races with the producers' pushes. */

enum { NE_PRODUCERS = 4, NE_CONSUMERS = 2, NE_ROUNDS = 20000 };

static struct {
    injectq q;
    item node[NE_PRODUCERS];
    atomic_uint popped[NE_PRODUCERS]; /* rounds popped, per producer */
    atomic_uint total, bad_node, double_pop;
    atomic_bool go, stop;
} ne;

static void *ne_producer(void *arg)
{
    uint32_t p = (uint32_t)(uintptr_t)arg;
    while (!atomic_load(&ne.go))
        sched_yield();
    for (unsigned r = 0; r < NE_ROUNDS; r++) {
        injectq_push(&ne.q, &ne.node[p].node);
        /* Wait for it to be popped (a lost node makes this wait until the
         * test thread's deadline). */
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
        item *it = ITEM_OF(n);
        /* pops counts pops, popped the producer's rounds: equal unless a
         * node came out twice for one push. */
        unsigned pops = atomic_fetch_add(&it->pops, 1) + 1;
        unsigned r = atomic_fetch_add(&ne.popped[it->id], 1) + 1;
        if (pops != r)
            atomic_fetch_add(&ne.double_pop, 1);
        atomic_fetch_add(&ne.total, 1);
    }
    return NULL;
}

Test(injectq, near_empty_stub_races, .timeout = 30)
{
    memset(&ne, 0, sizeof ne);
    injectq_init(&ne.q);
    for (uint32_t i = 0; i < NE_PRODUCERS; i++) {
        ne.node[i].id = i;
        atomic_init(&ne.node[i].pops, 0);
        atomic_init(&ne.popped[i], 0);
    }
    atomic_init(&ne.total, 0);
    atomic_init(&ne.bad_node, 0);
    atomic_init(&ne.double_pop, 0);
    atomic_init(&ne.go, false);
    atomic_init(&ne.stop, false);
    pthread_t prod[NE_PRODUCERS], cons[NE_CONSUMERS];
    for (uintptr_t i = 0; i < NE_PRODUCERS; i++)
        cr_assert_eq(pthread_create(&prod[i], NULL, ne_producer, (void *)i), 0);
    for (uintptr_t i = 0; i < NE_CONSUMERS; i++)
        cr_assert_eq(pthread_create(&cons[i], NULL, ne_consumer, NULL), 0);
    atomic_store(&ne.go, true);
    wait_or_stop(&ne.total, NE_PRODUCERS * NE_ROUNDS, &ne.stop);
    for (int i = 0; i < NE_PRODUCERS; i++)
        pthread_join(prod[i], NULL);
    for (int i = 0; i < NE_CONSUMERS; i++)
        pthread_join(cons[i], NULL);

    cr_assert_eq(atomic_load(&ne.bad_node), 0, "the stub or a foreign node was popped");
    cr_assert_eq(atomic_load(&ne.double_pop), 0, "a node popped twice for one push");
    for (int i = 0; i < NE_PRODUCERS; i++)
        cr_assert_eq(atomic_load(&ne.popped[i]), NE_ROUNDS, "producer %d: %u of %u pushes popped (node lost)",
                     i, atomic_load(&ne.popped[i]), NE_ROUNDS);
    cr_assert(injectq_try_lock(&ne.q));
    cr_assert_null(injectq_pop(&ne.q));
    injectq_unlock(&ne.q);
    cr_assert_not(injectq_maybe_nonempty(&ne.q));
}

Test(injectq, chain_push_keeps_its_order_between_single_pushes, .timeout = 30)
{
    enum { N = 10 };
    static item it[N];
    static injectq q;
    injectq_init(&q);
    for (uint32_t i = 0; i < N; i++)
        it[i].id = i;
    injectq_push(&q, &it[0].node);
    /* 1..7 as one chain, linked by hand, its last link left dangling */
    for (uint32_t i = 1; i < 7; i++)
        atomic_store(&it[i].node.next, &it[i + 1].node);
    atomic_store(&it[7].node.next, &it[9].node);
    injectq_push_chain(&q, &it[1].node, &it[7].node);
    injectq_push(&q, &it[8].node);
    for (uint32_t i = 0; i < 9; i++)
        cr_assert_eq(pop_id(&q), i);
    cr_assert_null(injectq_pop(&q), "the chain's last link was not cut");
    /* a chain of one, into an empty queue (the stub path) */
    injectq_push_chain(&q, &it[9].node, &it[9].node);
    cr_assert_eq(pop_id(&q), 9);
    cr_assert_null(injectq_pop(&q));
    cr_assert(!injectq_maybe_nonempty(&q));
}
