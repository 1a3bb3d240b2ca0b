/* test_runq.c - unit tests of the per-worker run queue (src/queue/runq.c):
 * FIFO ring, LIFO slot, full ring, take_half, steal, the non-empty hint,
 * counter wrap-around, and an owner racing two thieves where every item
 * must be consumed exactly once. Worker threads only record; the test
 * thread asserts after joining them.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "queue/runq.h"

#define P(i) ((void *)(uintptr_t)(i))
#define I(p) ((uintptr_t)(p))

Test(runq, push_pop_fifo, .timeout = 30)
{
    static runq q;
    runq_init(&q);
    cr_assert_null(runq_pop(&q, false));
    cr_assert_null(runq_pop(&q, true));
    for (uintptr_t i = 1; i <= 100; i++)
        cr_assert(runq_push(&q, P(i)));
    for (uintptr_t i = 1; i <= 100; i++)
        cr_assert_eq(I(runq_pop(&q, i & 1)), i);
    cr_assert_null(runq_pop(&q, false));
    /* Many rounds so the indices wrap around the ring several times. */
    uintptr_t next_in = 1, next_out = 1;
    for (int round = 0; round < 2000; round++) {
        int k = 1 + round % 37;
        for (int j = 0; j < k; j++)
            cr_assert(runq_push(&q, P(next_in++)));
        int t = 1 + (round * 5) % 37;
        for (int j = 0; j < t && next_out < next_in; j++)
            cr_assert_eq(I(runq_pop(&q, false)), next_out++);
    }
    while (next_out < next_in)
        cr_assert_eq(I(runq_pop(&q, false)), next_out++);
    cr_assert_null(runq_pop(&q, false));
}

Test(runq, lifo_slot, .timeout = 30)
{
    static runq q;
    runq_init(&q);
    cr_assert_null(runq_take_next(&q));
    cr_assert_null(runq_push_next(&q, P(1)), "slot was empty");
    cr_assert_eq(I(runq_push_next(&q, P(2))), 1, "push_next returns the previous one");
    cr_assert(runq_push(&q, P(10)));
    cr_assert(runq_push(&q, P(11)));
    cr_assert_eq(I(runq_pop(&q, false)), 2, "the slot comes first");
    cr_assert_eq(I(runq_pop(&q, false)), 10, "then the oldest ring entry");
    cr_assert_null(runq_push_next(&q, P(3)));
    cr_assert_eq(I(runq_pop(&q, true)), 11, "skip_next leaves the slot alone");
    cr_assert_null(runq_pop(&q, true), "ring empty; slot skipped");
    cr_assert_eq(I(runq_pop(&q, false)), 3);
    cr_assert_null(runq_pop(&q, false));
    /* runq_take_next */
    cr_assert_null(runq_push_next(&q, P(4)));
    cr_assert_eq(I(runq_take_next(&q)), 4);
    cr_assert_null(runq_take_next(&q));
    cr_assert_null(runq_pop(&q, false));
}

Test(runq, full_ring, .timeout = 30)
{
    static runq q;
    runq_init(&q);
    for (uintptr_t i = 1; i <= RUNQ_SIZE; i++)
        cr_assert(runq_push(&q, P(i)), "push %lu", (unsigned long)i);
    cr_assert_not(runq_push(&q, P(9999)), "ring full at RUNQ_SIZE");
    cr_assert_not(runq_push(&q, P(9999)));
    /* The LIFO slot is separate from the ring. */
    cr_assert_null(runq_push_next(&q, P(5000)));
    cr_assert_eq(I(runq_pop(&q, false)), 5000);
    cr_assert_eq(I(runq_pop(&q, false)), 1);
    cr_assert(runq_push(&q, P(RUNQ_SIZE + 1)), "one place free again");
    cr_assert_not(runq_push(&q, P(9999)));
    for (uintptr_t i = 2; i <= RUNQ_SIZE + 1; i++)
        cr_assert_eq(I(runq_pop(&q, false)), i);
    cr_assert_null(runq_pop(&q, false));
}

Test(runq, take_half, .timeout = 30)
{
    static runq q;
    void *out[RUNQ_SIZE / 2 + 1];
    runq_init(&q);
    cr_assert_eq(runq_take_half(&q, out), 0);

    for (uintptr_t i = 1; i <= RUNQ_SIZE; i++)
        cr_assert(runq_push(&q, P(i)));
    cr_assert_not(runq_push(&q, P(9999)));
    uint32_t n = runq_take_half(&q, out);
    cr_assert_eq(n, RUNQ_SIZE / 2);
    for (uint32_t i = 0; i < n; i++)
        cr_assert_eq(I(out[i]), i + 1, "oldest first");
    cr_assert(runq_push(&q, P(RUNQ_SIZE + 1)), "room after take_half");
    for (uintptr_t i = RUNQ_SIZE / 2 + 1; i <= RUNQ_SIZE + 1; i++)
        cr_assert_eq(I(runq_pop(&q, true)), i);
    cr_assert_null(runq_pop(&q, true));

    /* Odd and tiny sizes: at least one, rounded up. */
    const uint32_t sizes[] = {1, 2, 3, 5, 7, 100};
    const uint32_t want[] = {1, 1, 2, 3, 4, 50};
    uintptr_t v = 1000;
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        uintptr_t first = v;
        for (uint32_t i = 0; i < sizes[s]; i++)
            cr_assert(runq_push(&q, P(v++)));
        /* The LIFO slot is never taken by take_half. */
        cr_assert_null(runq_push_next(&q, P(77)));
        n = runq_take_half(&q, out);
        cr_assert_eq(n, want[s], "size %u: took %u", sizes[s], n);
        for (uint32_t i = 0; i < n; i++)
            cr_assert_eq(I(out[i]), first + i);
        for (uintptr_t i = first + n; i < v; i++)
            cr_assert_eq(I(runq_pop(&q, true)), i);
        cr_assert_null(runq_pop(&q, true));
        cr_assert_eq(I(runq_take_next(&q)), 77);
    }
}

Test(runq, steal_half, .timeout = 30)
{
    static runq victim, thief;
    runq_init(&victim);
    runq_init(&thief);
    cr_assert_null(runq_steal(&thief, &victim), "nothing to steal");

    for (uintptr_t i = 1; i <= 10; i++)
        cr_assert(runq_push(&victim, P(i)));
    /* The victim's LIFO slot is never stolen. */
    cr_assert_null(runq_push_next(&victim, P(500)));
    cr_assert_eq(I(runq_steal(&thief, &victim)), 1, "returns the oldest stolen entry");
    for (uintptr_t i = 2; i <= 5; i++)
        cr_assert_eq(I(runq_pop(&thief, false)), i, "the rest went to the thief's ring");
    cr_assert_null(runq_pop(&thief, false));
    for (uintptr_t i = 6; i <= 10; i++)
        cr_assert_eq(I(runq_pop(&victim, true)), i, "the victim keeps the newer half");
    cr_assert_null(runq_pop(&victim, true));
    cr_assert_null(runq_steal(&thief, &victim), "only the slot left: not stealable");
    cr_assert_eq(I(runq_pop(&victim, false)), 500);

    /* One entry: it is returned, nothing goes to the thief's ring. */
    cr_assert(runq_push(&victim, P(42)));
    cr_assert_eq(I(runq_steal(&thief, &victim)), 42);
    cr_assert_null(runq_pop(&thief, false));
    cr_assert_null(runq_pop(&victim, false));

    /* A full victim: half of it fits the empty thief. */
    for (uintptr_t i = 1; i <= RUNQ_SIZE; i++)
        cr_assert(runq_push(&victim, P(i)));
    cr_assert_eq(I(runq_steal(&thief, &victim)), 1);
    uintptr_t expect = 2;
    void *p;
    while ((p = runq_pop(&thief, false)) != NULL)
        cr_assert_eq(I(p), expect++);
    cr_assert_eq(expect, RUNQ_SIZE / 2 + 1, "stole %lu", (unsigned long)(expect - 1));
    while ((p = runq_pop(&victim, false)) != NULL)
        cr_assert_eq(I(p), expect++);
    cr_assert_eq(expect, RUNQ_SIZE + 1);
}

Test(runq, maybe_nonempty_ignores_lifo_slot, .timeout = 30)
{
    static runq q;
    runq_init(&q);
    cr_assert_not(runq_maybe_nonempty(&q));
    cr_assert_null(runq_push_next(&q, P(1)));
    cr_assert_not(runq_maybe_nonempty(&q), "the LIFO slot does not count");
    cr_assert(runq_push(&q, P(2)));
    cr_assert(runq_maybe_nonempty(&q));
    cr_assert_eq(I(runq_pop(&q, false)), 1);
    cr_assert(runq_maybe_nonempty(&q));
    cr_assert_eq(I(runq_pop(&q, false)), 2);
    cr_assert_not(runq_maybe_nonempty(&q));
}

/* White box: the free-running 32-bit counters wrap past UINT32_MAX. */
Test(runq, counter_wraparound, .timeout = 30)
{
    static runq q, thief;
    void *out[RUNQ_SIZE / 2 + 1];
    runq_init(&q);
    runq_init(&thief);
    atomic_store(&q.head, UINT32_MAX - 5);
    atomic_store(&q.tail, UINT32_MAX - 5);
    cr_assert_not(runq_maybe_nonempty(&q));
    for (uintptr_t i = 1; i <= RUNQ_SIZE; i++)
        cr_assert(runq_push(&q, P(i)));
    cr_assert_not(runq_push(&q, P(9999)), "full across the wrap");
    cr_assert_eq(I(runq_pop(&q, false)), 1);
    uint32_t n = runq_take_half(&q, out); /* 255 left: takes 128 */
    cr_assert_eq(n, 128);
    for (uint32_t i = 0; i < n; i++)
        cr_assert_eq(I(out[i]), i + 2);
    cr_assert_eq(I(runq_steal(&thief, &q)), 130); /* 127 left: steals 64 */
    uintptr_t expect = 131;
    void *p;
    while ((p = runq_pop(&thief, false)) != NULL)
        cr_assert_eq(I(p), expect++);
    cr_assert_eq(expect, 194);
    while ((p = runq_pop(&q, false)) != NULL)
        cr_assert_eq(I(p), expect++);
    cr_assert_eq(expect, RUNQ_SIZE + 1);
    cr_assert_not(runq_maybe_nonempty(&q));
}

/* ---- concurrent: the owner pushes and pops, two thieves steal ----------- */

enum { RC_ITEMS = 200000, RC_THIEVES = 2 };

typedef struct rc_shared {
    runq owner_q;
    runq thief_q[RC_THIEVES];
    atomic_uchar count[RC_ITEMS + 1];
    atomic_uint consumed_by[1 + RC_THIEVES]; /* 0: owner */
    atomic_uint bad_item;                    /* NULL or out of range */
    atomic_uint push_failed_after_half;
    atomic_uint steals;
    atomic_bool go, done;
} rc_shared;

static rc_shared rc;

static void rc_consume(void *item, unsigned who)
{
    uintptr_t id = I(item);
    if (id == 0 || id > RC_ITEMS) {
        atomic_fetch_add(&rc.bad_item, 1);
        return;
    }
    atomic_fetch_add_explicit(&rc.count[id], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&rc.consumed_by[who], 1, memory_order_relaxed);
}

static void rc_owner_push(uintptr_t id)
{
    if (runq_push(&rc.owner_q, P(id)))
        return;
    /* Full: move half out (the scheduler sends it to the global queue;
     * here the owner runs it) and retry. */
    void *out[RUNQ_SIZE / 2 + 1];
    uint32_t n = runq_take_half(&rc.owner_q, out);
    for (uint32_t i = 0; i < n; i++)
        rc_consume(out[i], 0);
    if (!runq_push(&rc.owner_q, P(id)))
        atomic_fetch_add(&rc.push_failed_after_half, 1);
}

static void *rc_owner(void *unused)
{
    while (!atomic_load(&rc.go))
        sched_yield();
    uintptr_t id = 1;
    /* Make sure the thieves get to steal at least once. */
    for (; id <= 200; id++)
        rc_owner_push(id);
    for (long spins = 0; atomic_load(&rc.steals) == 0 && spins < 20000000; spins++)
        sched_yield();
    for (; id <= RC_ITEMS; id++) {
        if (id % 7 == 0) {
            void *prev = runq_push_next(&rc.owner_q, P(id));
            if (prev != NULL)
                rc_owner_push(I(prev));
        } else {
            rc_owner_push(id);
        }
        if (id % 16 == 0) {
            for (int k = 0; k < 5; k++) {
                void *it = runq_pop(&rc.owner_q, k & 1);
                if (it != NULL)
                    rc_consume(it, 0);
            }
        }
        if (id % 128 == 0)
            sched_yield(); /* give the thieves a chance on few cores */
    }
    void *it;
    while ((it = runq_pop(&rc.owner_q, false)) != NULL)
        rc_consume(it, 0);
    atomic_store(&rc.done, true);
    return NULL;
}

static void *rc_thief(void *arg)
{
    unsigned me = (unsigned)(uintptr_t)arg;
    runq *mine = &rc.thief_q[me];
    runq *other = &rc.thief_q[(me + 1) % RC_THIEVES];
    while (!atomic_load(&rc.go))
        sched_yield();
    for (;;) {
        void *it;
        while ((it = runq_pop(mine, false)) != NULL)
            rc_consume(it, 1 + me);
        /* Own ring empty (only we push into it). After `done` the owner's
         * ring stays empty; whatever sits in the other thief's ring is
         * drained by that thief. */
        if (atomic_load(&rc.done))
            break;
        it = runq_steal(mine, &rc.owner_q);
        if (it == NULL)
            it = runq_steal(mine, other);
        if (it != NULL) {
            atomic_fetch_add(&rc.steals, 1);
            rc_consume(it, 1 + me);
        } else {
            sched_yield();
        }
    }
    return NULL;
}

Test(runq, owner_and_two_thieves_each_item_once, .timeout = 30)
{
    memset(&rc, 0, sizeof rc);
    runq_init(&rc.owner_q);
    for (int i = 0; i < RC_THIEVES; i++)
        runq_init(&rc.thief_q[i]);
    for (uint32_t i = 0; i <= RC_ITEMS; i++)
        atomic_init(&rc.count[i], 0);
    for (int i = 0; i <= RC_THIEVES; i++)
        atomic_init(&rc.consumed_by[i], 0);
    atomic_init(&rc.bad_item, 0);
    atomic_init(&rc.push_failed_after_half, 0);
    atomic_init(&rc.steals, 0);
    atomic_init(&rc.go, false);
    atomic_init(&rc.done, false);

    pthread_t owner, thieves[RC_THIEVES];
    cr_assert_eq(pthread_create(&owner, NULL, rc_owner, NULL), 0);
    for (uintptr_t i = 0; i < RC_THIEVES; i++)
        cr_assert_eq(pthread_create(&thieves[i], NULL, rc_thief, (void *)i), 0);
    atomic_store(&rc.go, true);
    pthread_join(owner, NULL);
    for (int i = 0; i < RC_THIEVES; i++)
        pthread_join(thieves[i], NULL);

    cr_assert_eq(atomic_load(&rc.bad_item), 0, "NULL or unknown item consumed");
    cr_assert_eq(atomic_load(&rc.push_failed_after_half), 0, "push failed after take_half");
    unsigned missing = 0, dup = 0, first_bad = 0;
    for (uint32_t i = 1; i <= RC_ITEMS; i++) {
        unsigned c = atomic_load(&rc.count[i]);
        if (c != 1 && first_bad == 0)
            first_bad = i;
        missing += c == 0;
        dup += c > 1;
    }
    cr_assert_eq(missing + dup, 0, "%u items lost, %u consumed twice (first: %u)", missing, dup, first_bad);
    unsigned total = 0;
    for (int i = 0; i <= RC_THIEVES; i++)
        total += atomic_load(&rc.consumed_by[i]);
    cr_assert_eq(total, RC_ITEMS);
    cr_assert_gt(atomic_load(&rc.steals), 0, "the thieves never stole");
    cr_log_info("runq: owner %u, thief0 %u, thief1 %u, steals %u", atomic_load(&rc.consumed_by[0]),
                atomic_load(&rc.consumed_by[1]), atomic_load(&rc.consumed_by[2]), atomic_load(&rc.steals));
}
