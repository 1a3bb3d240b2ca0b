/* test_mailbox.c - unit tests of the intrusive MPSC mailbox with the idle
 * bit (src/queue/mailbox.c).
 *
 * Checked: empty pop, FIFO, the "scheduled" initial state, exactly one
 * `true` push per idle period, try_idle refusing while a message (or a
 * half-done push) is pending, every node handed back exactly once (ASan
 * sees a leak otherwise), and a 4-producer run where this test's thread is
 * the consumer and runs only when a push told a producer to schedule it.
 * Worker threads never call cr_assert: they count anomalies in atomics
 * that the test thread asserts on after joining them.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "queue/mailbox.h"

typedef struct msg {
    mbox_node node;
    uint32_t producer;
    uint32_t seq;
} msg;

#define MSG_OF(n) ((msg *)((char *)(n) - offsetof(msg, node)))

static msg *msg_new(uint32_t producer, uint32_t seq)
{
    msg *m = malloc(sizeof *m);
    cr_assert_not_null(m);
    m->producer = producer;
    m->seq = seq;
    return m;
}

/* Pops everything that is there, freeing retired nodes; returns the count
 * popped. Sequential tests only. */
static unsigned drain_free(mailbox *mb, unsigned *freed)
{
    unsigned n = 0;
    mbox_node *retired;
    mbox_node *node;
    while ((node = mailbox_pop(mb, &retired)) != NULL) {
        if (retired != NULL) {
            free(MSG_OF(retired));
            (*freed)++;
        }
        n++;
    }
    cr_assert_null(retired, "a NULL pop must not hand back a node");
    return n;
}

static void free_tail(mailbox *mb, unsigned *freed)
{
    mbox_node *t = mailbox_tail_node(mb);
    if (t != NULL) {
        free(MSG_OF(t));
        (*freed)++;
    }
}

Test(mailbox, empty_pop_returns_null, .timeout = 30)
{
    mailbox mb;
    mailbox_init(&mb);
    mbox_node *retired = (mbox_node *)(uintptr_t)0x10; /* must be overwritten */
    cr_assert_null(mailbox_pop(&mb, &retired));
    cr_assert_null(retired);
    cr_assert_null(mailbox_pop(&mb, &retired));
    cr_assert_null(retired);
    cr_assert_null(mailbox_tail_node(&mb), "tail is the stub at start");
}

Test(mailbox, fifo_single_producer, .timeout = 30)
{
    enum { N = 1000 };
    mailbox mb;
    mailbox_init(&mb);
    msg *sent[N];
    for (uint32_t i = 0; i < N; i++) {
        sent[i] = msg_new(0, i);
        cr_assert_not(mailbox_push(&mb, &sent[i]->node), "init state is scheduled");
    }
    unsigned freed = 0;
    mbox_node *retired;
    for (uint32_t i = 0; i < N; i++) {
        mbox_node *n = mailbox_pop(&mb, &retired);
        cr_assert_not_null(n, "pop %u", i);
        cr_assert_eq(MSG_OF(n), sent[i], "FIFO order broken at %u", i);
        cr_assert_eq(MSG_OF(n)->seq, i);
        /* The node popped before this one is handed back now, never the
         * stub. */
        if (i == 0)
            cr_assert_null(retired, "first pop retires the stub: NULL");
        else
            cr_assert_eq(retired, &sent[i - 1]->node, "retired must be the previous node");
        if (retired != NULL) {
            free(MSG_OF(retired));
            freed++;
        }
        cr_assert_eq(mailbox_tail_node(&mb), n, "popped node stays the tail");
    }
    cr_assert_null(mailbox_pop(&mb, &retired));
    cr_assert_null(retired);
    free_tail(&mb, &freed);
    cr_assert_eq(freed, N);
}

Test(mailbox, init_is_scheduled_until_first_try_idle, .timeout = 30)
{
    mailbox mb;
    mailbox_init(&mb);
    unsigned freed = 0, pushed = 0;
    /* Scheduled: no push asks for scheduling. */
    for (uint32_t i = 0; i < 5; i++, pushed++)
        cr_assert_not(mailbox_push(&mb, &msg_new(0, i)->node), "push %u before first try_idle", i);
    cr_assert_eq(drain_free(&mb, &freed), 5);
    cr_assert(mailbox_try_idle(&mb), "empty: try_idle must succeed");

    /* Idle: exactly the first push returns true. */
    for (int round = 0; round < 4; round++) {
        cr_assert(mailbox_push(&mb, &msg_new(0, 100)->node), "first push after idle (round %d)", round);
        pushed++;
        for (uint32_t i = 0; i < 3; i++, pushed++)
            cr_assert_not(mailbox_push(&mb, &msg_new(0, i)->node), "later push (round %d)", round);
        cr_assert_eq(drain_free(&mb, &freed), 4);
        cr_assert(mailbox_try_idle(&mb));
    }
    /* Idle with no push in between: the next push still gets true. */
    cr_assert(mailbox_push(&mb, &msg_new(0, 7)->node));
    pushed++;
    cr_assert_eq(drain_free(&mb, &freed), 1);
    free_tail(&mb, &freed);
    cr_assert_eq(freed, pushed);
}

Test(mailbox, try_idle_fails_when_message_pending, .timeout = 30)
{
    mailbox mb;
    mailbox_init(&mb);
    unsigned freed = 0;
    /* From the initial (scheduled, stub-only) state. */
    cr_assert_not(mailbox_push(&mb, &msg_new(0, 0)->node));
    cr_assert_not(mailbox_try_idle(&mb), "a message is pending");
    /* Failing try_idle leaves it scheduled: pushes still return false. */
    cr_assert_not(mailbox_push(&mb, &msg_new(0, 1)->node));
    cr_assert_not(mailbox_try_idle(&mb));
    cr_assert_eq(drain_free(&mb, &freed), 2);
    cr_assert(mailbox_try_idle(&mb));

    /* From an idle state with a real node as the tail. */
    cr_assert(mailbox_push(&mb, &msg_new(0, 2)->node));
    cr_assert_not(mailbox_try_idle(&mb));
    mbox_node *retired;
    mbox_node *n = mailbox_pop(&mb, &retired);
    cr_assert_not_null(n);
    cr_assert_eq(MSG_OF(n)->seq, 2);
    cr_assert_not_null(retired);
    free(MSG_OF(retired));
    freed++;
    /* Popped one but pushed another meanwhile. */
    cr_assert_not(mailbox_push(&mb, &msg_new(0, 3)->node));
    cr_assert_not(mailbox_try_idle(&mb));
    cr_assert_eq(drain_free(&mb, &freed), 1);
    cr_assert(mailbox_try_idle(&mb));
    free_tail(&mb, &freed);
    cr_assert_eq(freed, 4);
}

/* A producer preempted between its exchange and its link store: the
 * consumer sees the mailbox as empty but must not go idle. The two steps
 * of mailbox_push are replayed by hand (white box). */
Test(mailbox, try_idle_fails_during_half_done_push, .timeout = 30)
{
    mailbox mb;
    mailbox_init(&mb);
    unsigned freed = 0;
    cr_assert(mailbox_try_idle(&mb));

    msg *m = msg_new(0, 0);
    atomic_store(&m->node.next, NULL);
    uintptr_t prev = atomic_exchange(&mb.head, (uintptr_t)&m->node);
    cr_assert_eq(prev & 1, 1, "this half-push owns the scheduling");
    mbox_node *retired;
    cr_assert_null(mailbox_pop(&mb, &retired), "link not stored yet: looks empty");
    cr_assert_null(retired);
    cr_assert_not(mailbox_try_idle(&mb), "must not go idle while a push is half-way");
    cr_assert_null(mailbox_pop(&mb, &retired));
    /* A complete push that lands behind the half-done one. */
    msg *m2 = msg_new(0, 1);
    cr_assert_not(mailbox_push(&mb, &m2->node), "not idle: exactly one true per idle period");
    cr_assert_null(mailbox_pop(&mb, &retired), "still blocked behind the missing link");
    cr_assert_not(mailbox_try_idle(&mb));
    /* Finish the first push. */
    atomic_store(&((mbox_node *)(prev & ~(uintptr_t)1))->next, &m->node);
    mbox_node *n = mailbox_pop(&mb, &retired);
    cr_assert_eq(n, &m->node);
    cr_assert_null(retired);
    n = mailbox_pop(&mb, &retired);
    cr_assert_eq(n, &m2->node);
    cr_assert_eq(retired, &m->node);
    free(m);
    freed++;
    cr_assert(mailbox_try_idle(&mb));
    free_tail(&mb, &freed);
    cr_assert_eq(freed, 2);
}

/* Every node comes back exactly once, in push order, one pop late; the
 * stub and the current tail never do. */
Test(mailbox, retired_nodes_handed_back_exactly_once, .timeout = 30)
{
    enum { N = 500 };
    mailbox mb;
    mailbox_init(&mb);
    msg *all[N];
    unsigned handed_back[N] = {0};
    uint32_t pushed = 0, popped = 0;
    unsigned freed = 0;
    mbox_node *retired;
    /* Interleave pushes, pops and idle transitions. */
    while (popped < N) {
        uint32_t burst = 1 + (pushed * 7) % 5;
        for (uint32_t k = 0; k < burst && pushed < N; k++, pushed++) {
            all[pushed] = msg_new(0, pushed);
            (void)mailbox_push(&mb, &all[pushed]->node);
        }
        uint32_t take = 1 + (popped * 3) % 4;
        for (uint32_t k = 0; k < take; k++) {
            mbox_node *n = mailbox_pop(&mb, &retired);
            if (n == NULL) {
                cr_assert_null(retired);
                cr_assert_eq(popped, pushed, "NULL pop with %u pending", pushed - popped);
                cr_assert(mailbox_try_idle(&mb));
                break;
            }
            cr_assert_eq(MSG_OF(n)->seq, popped);
            popped++;
            if (retired != NULL) {
                uint32_t s = MSG_OF(retired)->seq;
                cr_assert_lt(s, N);
                cr_assert_neq(retired, &mb.stub);
                cr_assert_neq(retired, n);
                cr_assert_eq(s + 2, popped, "retired node must be the one popped before");
                handed_back[s]++;
                free(MSG_OF(retired));
                freed++;
            } else {
                cr_assert_eq(popped, 1, "only the first pop retires the stub");
            }
        }
    }
    cr_assert_null(mailbox_pop(&mb, &retired));
    mbox_node *t = mailbox_tail_node(&mb);
    cr_assert_eq(t, &all[N - 1]->node);
    handed_back[N - 1]++;
    free(all[N - 1]);
    freed++;
    for (uint32_t i = 0; i < N; i++)
        cr_assert_eq(handed_back[i], 1, "node %u handed back %u times", i, handed_back[i]);
    cr_assert_eq(freed, N);
}

/* ---- concurrent: 4 producers, the test thread consumes ---------------- */

enum { MP_PRODUCERS = 4, MP_PER_PRODUCER = 20000 };

typedef struct mp_shared {
    mailbox mb;
    atomic_bool go;
    /* Number of pushes that returned true (scheduling tokens). */
    atomic_uint trues;
    /* Successful try_idle calls plus the one in flight (raised before
     * the CAS, lowered again if it failed): an upper bound of successful
     * idles that a producer seeing `true` can check against. */
    atomic_uint idle_bound;
    atomic_uint producer_violations; /* a `true` with no idle before it */
    atomic_uint per_producer_trues[MP_PRODUCERS];
} mp_shared;

typedef struct mp_arg {
    mp_shared *sh;
    uint32_t id;
} mp_arg;

static void *mp_producer(void *p)
{
    mp_arg *a = p;
    mp_shared *sh = a->sh;
    while (!atomic_load(&sh->go))
        sched_yield();
    for (uint32_t i = 0; i < MP_PER_PRODUCER; i++) {
        msg *m = malloc(sizeof *m);
        if (m == NULL)
            abort();
        m->producer = a->id;
        m->seq = i;
        if (mailbox_push(&sh->mb, &m->node)) {
            unsigned t = atomic_fetch_add(&sh->trues, 1) + 1;
            if (t > atomic_load(&sh->idle_bound))
                atomic_fetch_add(&sh->producer_violations, 1);
            atomic_fetch_add(&sh->per_producer_trues[a->id], 1);
        }
        if ((i & 63) == 0)
            sched_yield(); /* let the consumer go idle now and then */
    }
    return NULL;
}

Test(mailbox, four_producers_exactly_once_scheduling, .timeout = 30)
{
    static mp_shared sh; /* static: large-ish and zeroed */
    memset(&sh, 0, sizeof sh);
    mailbox_init(&sh.mb);
    atomic_init(&sh.go, false);
    atomic_init(&sh.trues, 0);
    atomic_init(&sh.idle_bound, 0);
    atomic_init(&sh.producer_violations, 0);
    for (int i = 0; i < MP_PRODUCERS; i++)
        atomic_init(&sh.per_producer_trues[i], 0);

    pthread_t th[MP_PRODUCERS];
    mp_arg args[MP_PRODUCERS];
    for (uint32_t i = 0; i < MP_PRODUCERS; i++) {
        args[i] = (mp_arg){.sh = &sh, .id = i};
        cr_assert_eq(pthread_create(&th[i], NULL, mp_producer, &args[i]), 0);
    }

    const unsigned total = MP_PRODUCERS * MP_PER_PRODUCER;
    uint32_t next_seq[MP_PRODUCERS] = {0};
    unsigned received = 0, freed = 0;
    unsigned fifo_violations = 0, bad_producer = 0;
    unsigned successes = 0, failed_idles = 0, consumed_tokens = 0;
    /* `true` pushes seen while the consumer was scheduled (must be 0), and
     * more trues than idle periods at the moment of an idle (must be 0). */
    unsigned true_while_scheduled = 0, extra_trues_at_idle = 0;
    bool scheduled = true; /* mailbox_init: scheduled */

    atomic_store(&sh.go, true);
    while (received < total) {
        if (!scheduled) {
            /* Idle: we may run only when a producer's push returned true. */
            while (atomic_load(&sh.trues) == consumed_tokens)
                sched_yield();
            consumed_tokens++;
            scheduled = true;
        }
        mbox_node *retired, *n;
        while ((n = mailbox_pop(&sh.mb, &retired)) != NULL) {
            if (retired != NULL) {
                free(MSG_OF(retired));
                freed++;
            }
            msg *m = MSG_OF(n);
            if (m->producer >= MP_PRODUCERS) {
                bad_producer++;
            } else {
                if (m->seq != next_seq[m->producer])
                    fifo_violations++;
                next_seq[m->producer] = m->seq + 1;
            }
            received++;
        }
        if (received == total)
            break; /* leave scheduled; the final try_idle is checked below */
        /* Scheduled since the last token: no push may have returned true. */
        if (atomic_load(&sh.trues) != consumed_tokens)
            true_while_scheduled++;
        atomic_fetch_add(&sh.idle_bound, 1);
        if (mailbox_try_idle(&sh.mb)) {
            successes++;
            /* One token per earlier idle period, at most one for this. */
            if (atomic_load(&sh.trues) > successes)
                extra_trues_at_idle++;
            scheduled = false;
        } else {
            atomic_fetch_sub(&sh.idle_bound, 1);
            failed_idles++; /* a push is half-way: run again */
            sched_yield();
        }
    }
    for (int i = 0; i < MP_PRODUCERS; i++)
        pthread_join(th[i], NULL);

    unsigned trues = atomic_load(&sh.trues);
    cr_assert_eq(received, total);
    cr_assert_eq(bad_producer, 0);
    cr_assert_eq(fifo_violations, 0, "per-producer FIFO order broken %u times", fifo_violations);
    for (int i = 0; i < MP_PRODUCERS; i++)
        cr_assert_eq(next_seq[i], MP_PER_PRODUCER, "producer %d: last seq %u", i, next_seq[i]);
    cr_assert_eq(atomic_load(&sh.producer_violations), 0, "a push returned true with no idle before it");
    cr_assert_eq(true_while_scheduled, 0, "a push returned true while the consumer was scheduled");
    cr_assert_eq(extra_trues_at_idle, 0, "two trues in one idle period");
    /* Every idle period ended with exactly one true, which we consumed. */
    cr_assert_eq(trues, successes, "trues=%u successful try_idle=%u", trues, successes);
    cr_assert_eq(trues, consumed_tokens);
    unsigned sum = 0;
    for (int i = 0; i < MP_PRODUCERS; i++)
        sum += atomic_load(&sh.per_producer_trues[i]);
    cr_assert_eq(sum, trues);

    /* Everything consumed and all producers done: going idle must work,
     * and the next push must be told to schedule. */
    mbox_node *retired;
    cr_assert_null(mailbox_pop(&sh.mb, &retired));
    cr_assert(mailbox_try_idle(&sh.mb), "quiescent and empty: try_idle must succeed");
    msg *last = malloc(sizeof *last);
    cr_assert_not_null(last);
    last->producer = 99;
    last->seq = 0;
    cr_assert(mailbox_push(&sh.mb, &last->node));
    mbox_node *n = mailbox_pop(&sh.mb, &retired);
    cr_assert_eq(n, &last->node);
    cr_assert_not_null(retired);
    free(MSG_OF(retired));
    freed++;
    free_tail(&sh.mb, &freed);
    cr_assert_eq(freed, total + 1);
    cr_log_info("mailbox MPSC: %u idle periods, %u failed try_idle", successes, failed_idles);
}
