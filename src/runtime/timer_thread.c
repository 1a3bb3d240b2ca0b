/* timer_thread.c - the thread that owns the timer wheel.
 *
 * Problem: take in the records any thread arms or cancels (timers.c),
 * fire each no earlier than its exact deadline and as little as possible
 * later, free what is cancelled or aimed at a dead server, and sleep when
 * nothing is due.
 *
 * Design: the wheel (1 ms ticks) files a timer under the tick that holds
 * its deadline and hands it out when the clock enters that tick, up to a
 * tick *before* the deadline. The tick being served is split into
 * SUB_BUCKETS buckets: a timer not yet due waits in the bucket of its
 * exact deadline and fires when the clock passes the bucket's end. So no
 * timer fires early, and one is late by at most NS_PER_SUB plus the
 * thread's wake-up (rather than up to a whole tick). Within a bucket,
 * timers fire in the order the wheel handed them out (deadline order at
 * tick granularity, then arming order).
 *
 * The loop: take in at most INBOX_BATCH records (so that a thread arming
 * in a tight loop cannot hold up due timers), serve the clock (the
 * servers its timers make runnable go to the workers in batches, see
 * run_batch in scheduler.c), then sleep
 * on a futex until the next bucket end or occupied tick, whichever is
 * first. The thread's timer slack is set low, or the kernel would add
 * 50 us to every sleep. (A walk that warmed the next cascade's timers
 * while the thread had time to spare was tried and removed: it moved the
 * cache misses rather than saving them, and cost W7 a tenth of its CPU.)
 *
 * Ownership of a record (see the state word in timer_service.h): the
 * drain sets DRAINED with a CAS from PENDING; from then on a canceller
 * that wins PENDING -> CANCELLED pushes the record back as a removal
 * request, and only that request frees it. Everything else (a cancel
 * before the drain, a fire, a purge that wins its CAS, a dead target) is
 * freed by whoever won.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "alloc.h"
#include "futex.h"
#include "thread_cache.h"
#include "timer_service.h"

#define INBOX_BATCH 1024
/* Held timers are taken while the inbox is not empty yet only this close
 * to the earliest one's deadline (see timer_main). */
#define HELD_URGENT_NS (NS_PER_TICK)
#define TIMER_SLACK_NS 5000
#define IDLE_TRIM_NS 100000000u /* a sleep this long trims the message cache */

static timer_rec *rec_from_wheel(wheel_timer *wt)
{
    return (timer_rec *)((char *)wt - offsetof(timer_rec, wt));
}

/* ---- records ----------------------------------------------------------- */

static void rec_free(timer_service *ts, timer_rec *r)
{
    if (atomic_load_explicit(&r->state, memory_order_relaxed) & ST_DRAINED) /* only this thread writes `held` */
        atomic_store_explicit(&ts->held, atomic_load_explicit(&ts->held, memory_order_relaxed) - 1,
                              memory_order_relaxed);
    rec_recycle(ts, r, &ts->free_cache);
}

/* The head of the list of timers aimed at slot idx; NULL if its chunk
 * cannot be made (the timer then goes unlisted: a purge misses it, and it
 * is dropped when it comes due instead). */
static timer_rec **target_head(timer_service *ts, uint32_t idx, bool make)
{
    timer_rec **chunk = ts->by_target[idx >> TARGET_CHUNK_SHIFT];
    if (chunk == NULL) {
        if (!make)
            return NULL;
        chunk = gs_calloc((size_t)1 << TARGET_CHUNK_SHIFT, sizeof *chunk);
        if (chunk == NULL)
            return NULL;
        ts->by_target[idx >> TARGET_CHUNK_SHIFT] = chunk;
    }
    return &chunk[idx & ((1u << TARGET_CHUNK_SHIFT) - 1)];
}

/* The target's list (so that a purge finds its timers). */
static void list_link(gs_runtime *rt, timer_rec *r)
{
    timer_rec **head =
        target_head(rt->timers, pid_index(atomic_load_explicit(&r->target, memory_order_relaxed)), true);
    if (head == NULL)
        return;
    r->proc_prev = NULL;
    r->proc_next = *head;
    if (*head != NULL)
        (*head)->proc_prev = r;
    *head = r;
    r->in_list = true;
}

static void list_unlink(gs_runtime *rt, timer_rec *r)
{
    if (!r->in_list)
        return;
    if (r->proc_prev != NULL)
        r->proc_prev->proc_next = r->proc_next;
    else
        *target_head(rt->timers, pid_index(atomic_load_explicit(&r->target, memory_order_relaxed)), false) =
            r->proc_next;
    if (r->proc_next != NULL)
        r->proc_next->proc_prev = r->proc_prev;
    r->in_list = false;
}

/* ---- sub-tick buckets ---------------------------------------------------- */

static void bucket_add(timer_service *ts, timer_rec *r, unsigned b)
{
    wheel_timer *head = &ts->buckets[b];
    r->wt.slot = (uint8_t)b;
    r->wt.prev = head->prev; /* append: keeps the wheel's order */
    r->wt.next = head;
    head->prev->next = &r->wt;
    head->prev = &r->wt;
    ts->buckets_used |= 1u << b;
    r->where = AT_BUCKET;
}

static void bucket_unlink(timer_service *ts, timer_rec *r)
{
    r->wt.prev->next = r->wt.next;
    r->wt.next->prev = r->wt.prev;
    unsigned b = r->wt.slot;
    if (ts->buckets[b].next == &ts->buckets[b])
        ts->buckets_used &= ~(1u << b);
    r->wt.prev = r->wt.next = NULL;
    r->where = AT_NOWHERE;
}

/* Takes r out of the wheel or its bucket, and out of its target's list. */
static void unlink_everywhere(gs_runtime *rt, timer_rec *r)
{
    timer_service *ts = rt->timers;
    if (r->where == AT_WHEEL)
        wheel_remove(ts->wheel, &r->wt);
    else if (r->where == AT_BUCKET)
        bucket_unlink(ts, r);
    r->where = AT_NOWHERE;
    list_unlink(rt, r);
}

/* ---- firing ------------------------------------------------------------ */

/* Sends m to whoever holds `name` now (a TK_NAMED timer); with nobody,
 * m is dropped, as erlang:send_after does. Frees m either way. */
static void send_to_name(gs_runtime *rt, const char *name, msg *m)
{
    gs_pid to;
    if (gs_whereis(rt, name, &to) == GS_OK)
        (void)msg_send(rt, to, m); /* frees m if the holder is gone */
    else
        msg_free(m);
}

/* Files r again a tick from now (its message could not be allocated). */
static void retry_later(gs_runtime *rt, timer_rec *r, uint64_t now)
{
    timer_service *ts = rt->timers;
    if (!ts->oom_logged) {
        ts->oom_logged = true;
        log_write(rt, GS_LOG_ERROR, "timer message not allocated: out of memory; retrying every tick");
    }
    wheel_insert(ts->wheel, &r->wt, tick_of_ns(ts, now) + 1);
    r->where = AT_WHEEL;
}

/* An interval timer came due: send a copy of its message and file it
 * again, still pending, for its next deadline. Its state does not change,
 * so there is no race with a cancel here: a cancel that comes after this
 * tick was sent is met where the tick is handled (timers_tick_current:
 * the tick names the timer's record and generation, and a server drops a
 * tick whose timer is no longer pending). The next deadline is the last
 * one plus the interval, so ticks do not drift; if that has passed too
 * (the runtime was held up for a whole interval), the missed ticks are
 * skipped rather than sent in a burst. A tick that finds its server gone
 * ends the timer then and there, whether or not the purge its exit asked
 * for is still on the way: an interval timer must not outlive its server
 * by a missed purge, ticking for ever. */
static void fire_tick(gs_runtime *rt, timer_rec *r, uint8_t kind, uint64_t w, uint64_t now)
{
    timer_service *ts = rt->timers;
    const msg *tmpl = r->u.tick.tmpl;
    msg *m = msg_cache_new(rt, &ts->msgs, MSG_TICK, r->tag, tmpl->data, tmpl->len);
    if (m == NULL) {
        retry_later(rt, r, now);
        return;
    }
    m->ticket = (ticket){.slot = r->idx, .seq = w >> ST_GEN_SHIFT};
    lateness_note(&ts->lateness, atomic_load_explicit(&r->deadline_ns, memory_order_relaxed));
    if (kind == TK_NAMED) {
        /* To a name: whoever holds it now gets this tick; with nobody,
         * or a holder just gone, the tick is dropped and the timer ticks
         * on (timer:send_interval to a registered name). */
        send_to_name(rt, r->u.named.name, m);
    } else if (msg_send(rt, atomic_load_explicit(&r->target, memory_order_relaxed), m) == GS_ENOPROC) { /* m freed */
        list_unlink(rt, r);
        /* acq_rel: one winner against gs_cancel_timer, whose removal
         * request frees the record if it won (it is nowhere now). */
        if (atomic_compare_exchange_strong_explicit(&r->state, &w, (w & ~(uint64_t)3) | TS_DONE,
                                                    memory_order_acq_rel, memory_order_acquire))
            rec_free(ts, r);
        return;
    }
    uint64_t interval = r->u.tick.interval_ns;
    uint64_t next = atomic_load_explicit(&r->deadline_ns, memory_order_relaxed) + interval;
    if (next <= now)
        next = now + interval;
    atomic_store_explicit(&r->deadline_ns, next, memory_order_relaxed); /* gs_read_timer reads it */
    wheel_insert(ts->wheel, &r->wt, tick_of_ns(ts, next));
    r->where = AT_WHEEL;
}

/* r is due (its deadline has passed) and out of the wheel and buckets. */
static void fire(gs_runtime *rt, timer_rec *r, uint64_t now)
{
    timer_service *ts = rt->timers;
    uint64_t w = atomic_load_explicit(&r->state, memory_order_acquire);
    if ((w & 3) != TS_PENDING) {
        /* Cancelled after the drain: its removal request frees it. */
        list_unlink(rt, r);
        return;
    }
    uint8_t kind = atomic_load_explicit(&r->kind, memory_order_relaxed);
    uint8_t msg_kind = atomic_load_explicit(&r->msg_kind, memory_order_relaxed);
    if ((kind == TK_SEND || kind == TK_NAMED) && msg_kind == MSG_TICK) {
        fire_tick(rt, r, kind, w, now);
        return;
    }
    msg *m = NULL;
    if (kind == TK_NAMED) {
        m = r->u.named.m; /* made when armed */
    } else if (kind == TK_SEND) {
        /* The message first, so that an allocation failure leaves the
         * timer pending (tried again next tick, still cancellable). */
        if (r->inline_data) {
            m = msg_cache_new(rt, &ts->msgs, msg_kind, r->tag, r->u.data, r->len);
            if (m == NULL) {
                retry_later(rt, r, now);
                return;
            }
        } else {
            m = r->u.m;
        }
    }
    /* acq_rel: one winner against gs_cancel_timer's CAS. */
    if (!atomic_compare_exchange_strong_explicit(&r->state, &w, (w & ~(uint64_t)3) | TS_DONE,
                                                 memory_order_acq_rel, memory_order_acquire)) {
        if (r->inline_data && m != NULL)
            msg_free(m); /* made for nothing: the cancel won */
        list_unlink(rt, r);
        return; /* cancelled in between: the removal request frees it */
    }
    list_unlink(rt, r);
    lateness_note(&ts->lateness, atomic_load_explicit(&r->deadline_ns, memory_order_relaxed));
    if (kind == TK_FN) {
        r->u.call.fn(rt, r->u.call.a, r->u.call.b);
    } else if (kind == TK_NAMED) {
        r->u.named.m = NULL; /* handed over */
        m->ticket = (ticket){.slot = r->idx, .seq = w >> ST_GEN_SHIFT};
        send_to_name(rt, r->u.named.name, m);
    } else {
        if (!r->inline_data)
            r->u.m = NULL; /* handed over */
        if (msg_kind == MSG_INFO) /* names its timer to the server (gs_msg.timer) */
            m->ticket = (ticket){.slot = r->idx, .seq = w >> ST_GEN_SHIFT};
        (void)msg_send(rt, atomic_load_explicit(&r->target, memory_order_relaxed), m); /* frees m if gone */
    }
    rec_free(ts, r);
}

typedef struct serve_ctx {
    gs_runtime *rt;
    uint64_t now;
    bool due_parked; /* a due timer was parked behind waiting ones (on_tick) */
} serve_ctx;

/* The bucket of the tick being served that holds `ns` (at or after the
 * tick's start). */
static unsigned bucket_of(timer_service *ts, uint64_t ns)
{
    uint64_t b = (ns - tick_start_ns(ts, ts->bucket_tick)) / NS_PER_SUB;
    return b < SUB_BUCKETS ? (unsigned)b : SUB_BUCKETS - 1;
}

/* The wheel hands out a timer of the tick being served: fire it if due,
 * else park it in the bucket of its deadline.
 * Order: a timer handed out after its tick began (armed late in it, or
 * taken in late) may be due at once while one armed before it with the
 * same delay, handed out on an earlier pass when it was not yet due,
 * still waits in a bucket for the bucket's end: firing the new one at
 * once would overtake it (the header promises the order; delay-0 timers
 * did overtake). So a due timer with a waiting timer in its bucket or an
 * earlier one is parked behind them, and serve() then fires the due part
 * of the current bucket in list order (fire_due_in_bucket). */
static void on_tick(wheel_timer *wt, void *arg)
{
    serve_ctx *c = arg;
    timer_service *ts = c->rt->timers;
    timer_rec *r = rec_from_wheel(wt);
    r->where = AT_NOWHERE;
    uint64_t deadline = atomic_load_explicit(&r->deadline_ns, memory_order_relaxed);
    if (deadline <= c->now) {
        uint64_t tick_start = tick_start_ns(ts, ts->bucket_tick);
        /* A deadline before the tick is older than everything waiting. */
        unsigned b = deadline < tick_start ? 0 : bucket_of(ts, deadline);
        if (deadline < tick_start || (ts->buckets_used & ((2u << b) - 1)) == 0) {
            fire(c->rt, r, c->now);
            return;
        }
        bucket_add(ts, r, b);
        c->due_parked = true;
        return;
    }
    /* Not due: its deadline lies in the tick being served (the wheel
     * hands out no later tick). */
    bucket_add(ts, r, bucket_of(ts, deadline));
}

/* Fires every bucket whose end is at or before `until` (all of them for
 * UINT64_MAX). */
static void fire_buckets(gs_runtime *rt, uint64_t until, uint64_t now)
{
    timer_service *ts = rt->timers;
    while (ts->buckets_used != 0) {
        unsigned b = (unsigned)__builtin_ctz(ts->buckets_used);
        uint64_t end = tick_start_ns(ts, ts->bucket_tick) + (uint64_t)(b + 1) * NS_PER_SUB;
        if (end > until)
            return;
        wheel_timer *head = &ts->buckets[b];
        while (head->next != head) {
            timer_rec *r = rec_from_wheel(head->next);
            bucket_unlink(ts, r);
            fire(rt, r, now);
        }
    }
}

/* Fires the due timers of the bucket holding `now`, in list order,
 * leaving the rest for the bucket's end (see on_tick). The buckets before
 * it are empty: fire_buckets(now) has fired them. */
static void fire_due_in_bucket(gs_runtime *rt, uint64_t now)
{
    timer_service *ts = rt->timers;
    wheel_timer *head = &ts->buckets[bucket_of(ts, now)];
    for (wheel_timer *wt = head->next, *next; wt != head; wt = next) {
        next = wt->next; /* read first: fire frees the record */
        timer_rec *r = rec_from_wheel(wt);
        if (atomic_load_explicit(&r->deadline_ns, memory_order_relaxed) <= now) {
            bucket_unlink(ts, r);
            fire(rt, r, now);
        }
    }
}

/* Brings the wheel and the buckets up to `now`. */
static void serve(gs_runtime *rt, uint64_t now)
{
    timer_service *ts = rt->timers;
    uint64_t tick = tick_of_ns(ts, now);
    if (tick != ts->bucket_tick) {
        fire_buckets(rt, UINT64_MAX, now); /* an earlier tick: all due */
        ts->bucket_tick = tick;
    }
    lateness_round(&ts->lateness, now);
    serve_ctx c = {rt, now, false};
    wheel_advance(ts->wheel, tick, on_tick, &c);
    fire_buckets(rt, now, now);
    if (c.due_parked)
        fire_due_in_bucket(rt, now);
}

/* When serve() next has work: the end of the first occupied bucket or
 * the start of the next occupied tick; UINT64_MAX if none. */
static uint64_t next_work_ns(timer_service *ts)
{
    uint64_t at = UINT64_MAX;
    if (ts->buckets_used != 0) {
        unsigned b = (unsigned)__builtin_ctz(ts->buckets_used);
        at = tick_start_ns(ts, ts->bucket_tick) + (uint64_t)(b + 1) * NS_PER_SUB;
    }
    uint64_t tick = wheel_next_tick(ts->wheel);
    if (tick != UINT64_MAX && tick_start_ns(ts, tick) < at)
        at = tick_start_ns(ts, tick);
    return at;
}

/* ---- taking records in ---------------------------------------------------- */

/* Takes a timer of a dead server out and frees it, unless a canceller
 * won the record first (it is then freed by the removal request). */
static void purge_rec(gs_runtime *rt, timer_rec *r)
{
    unlink_everywhere(rt, r);
    uint64_t w = atomic_load_explicit(&r->state, memory_order_acquire);
    /* Against a canceller: the winner owns the record. */
    if ((w & 3) == TS_PENDING &&
        atomic_compare_exchange_strong_explicit(&r->state, &w, (w & ~(uint64_t)3) | TS_CANCELLED,
                                                memory_order_acq_rel, memory_order_relaxed))
        rec_free(rt->timers, r);
}

static void purge(gs_runtime *rt, gs_pid dead)
{
    timer_service *ts = rt->timers;
    ts->alive_cache = GS_NOPID; /* see take_in */
    timer_rec **head = target_head(ts, pid_index(dead), false);
    timer_rec *r = head != NULL ? *head : NULL;
    while (r != NULL) {
        timer_rec *next = r->proc_next;
        if (atomic_load_explicit(&r->target, memory_order_relaxed) == dead)
            purge_rec(rt, r);
        r = next;
    }
}

/* Purges owed. A purge is asked for with a record (timers_purge); with
 * GS_TIMERS_MAX records taken an exiting server cannot have one, so it
 * pushes its pid on ts->owed (a node from malloc) instead, and the
 * thread purges those pids as usual. Without this a stopped server's
 * timers stayed until their deadlines, so a full wheel stayed full.
 * Tried first: a sweep of every target list for dead servers' timers (a
 * live server holding most records made each pass walk them all,
 * stalling every timer for a quarter of a second), then 64 fixed cells
 * for the pids (exits waited on their worker for a free one, up to
 * 100 ms each, when the thread was busy). */
static void purge_owed_pids(gs_runtime *rt)
{
    timer_service *ts = rt->timers;
    if (atomic_load_explicit(&ts->owed, memory_order_relaxed) == NULL)
        return;
    /* acquire: the nodes' contents, and each exit's close of its slot
     * before its push (the purge's liveness checks see it gone). */
    owed_purge *n = atomic_exchange_explicit(&ts->owed, NULL, memory_order_acquire);
    while (n != NULL) {
        owed_purge *next = n->next;
        purge(rt, n->dead);
        free(n);
        n = next;
    }
}

/* A record from the inbox: a new timer, a removal request or a purge. */
static void take_in(gs_runtime *rt, timer_rec *r)
{
    timer_service *ts = rt->timers;
    uint8_t kind = atomic_load_explicit(&r->kind, memory_order_relaxed);
    if (kind == TK_PURGE) {
        purge(rt, atomic_load_explicit(&r->target, memory_order_relaxed));
        rec_free(ts, r);
        return;
    }
    uint64_t w = atomic_load_explicit(&r->state, memory_order_acquire);
    if (w & ST_DRAINED) { /* a removal request: cancelled after the drain */
        unlink_everywhere(rt, r);
        rec_free(ts, r);
        return;
    }
    uint64_t drained = w | ST_DRAINED;
    gs_pid target = atomic_load_explicit(&r->target, memory_order_relaxed);
    /* A target found alive stays "alive" here until the next purge: if it
     * died meanwhile, its purge request is behind the records pushed
     * before it (they are listed, then purged) and resets the cache for
     * those pushed after (they look again). Saves a load of a line its
     * senders keep writing, per timer. */
    if (kind == TK_SEND && target != ts->alive_cache) {
        if (target_alive(rt, target))
            ts->alive_cache = target;
        else
            drained = (w & ~(uint64_t)3) | TS_CANCELLED; /* its server is gone: drop it */
    }
    /* acq_rel against gs_cancel_timer: a cancel that got in first means
     * the record is ours to free. */
    if ((w & 3) != TS_PENDING ||
        !atomic_compare_exchange_strong_explicit(&r->state, &w, drained, memory_order_acq_rel,
                                                 memory_order_acquire) ||
        (drained & 3) == TS_CANCELLED) {
        rec_free(ts, r);
        return;
    }
    atomic_store_explicit(&ts->held, atomic_load_explicit(&ts->held, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    if (kind == TK_SEND)
        list_link(rt, r);
    /* A deadline already past lands in the current tick and fires at once. */
    wheel_insert(ts->wheel, &r->wt, tick_of_ns(ts, atomic_load_explicit(&r->deadline_ns, memory_order_relaxed)));
    r->where = AT_WHEEL;
}

static void drain_inbox(gs_runtime *rt, unsigned limit)
{
    timer_service *ts = rt->timers;
    mbox_node *n;
    for (unsigned taken = 0; taken < limit && (n = injectq_pop(&ts->inbox)) != NULL; taken++)
        take_in(rt, rec_from_inbox(n));
}

static void take_in_chain(gs_runtime *rt, const outbox_chain *got)
{
    for (mbox_node *n = got->first, *next; n != NULL; n = next) {
        /* relaxed: the chain is ours; the exchange that took it acquired
         * its links. Read before take_in, which may free the record. */
        next = n == got->last ? NULL : atomic_load_explicit(&n->next, memory_order_relaxed);
        take_in(rt, rec_from_inbox(n));
    }
}

/* Takes in the timers held in outboxes (timer_outbox.c) whose earliest
 * deadline comes before horizon_ns, the workers' and outside threads',
 * and sets the hint to the earliest deadline left held ("The hint"). */
static void sweep_outboxes(gs_runtime *rt, uint64_t horizon_ns)
{
    timer_service *ts = rt->timers;
    /* seq_cst: the reset comes before the walk's reads of the outboxes. */
    atomic_store_explicit(&ts->held_hint_ns, UINT64_MAX, memory_order_seq_cst);
    outbox_chain got = {NULL, NULL};
    uint64_t kept_min = UINT64_MAX;
    for (unsigned i = 0; i < rt->nworkers; i++)
        (void)outbox_take(&rt->workers[i].timer_side.outbox, horizon_ns, &got, &kept_min);
    thread_outboxes_take(rt, horizon_ns, &got, &kept_min);
    outbox_hint_lower(ts, kept_min);
    if (got.first == NULL)
        return;
    /* A thread's older timers may still wait in the inbox (the loop waits
     * for it to empty, but not past HELD_URGENT_NS before a held
     * deadline): these go behind them, so that each thread's timers reach
     * the wheel in the order armed (timer_outbox.c, "Ordering"). Taking
     * them in at once put them ahead, and one thread's timers of one
     * delay fired out of order whenever another thread kept the inbox
     * full. The cost, under a flood the thread cannot keep up with: held
     * timers are then as late as the backlog (hundreds of milliseconds;
     * they came on time and out of order before), like every other timer
     * in the inbox. Taking them in at once when urgent, and waiting for a
     * mark in the inbox, were tried: both gave the order up again. Known
     * gap: a thread that flushes newer timers into the inbox between our
     * take and our push (a window that a walk over many threads'
     * outboxes widens) sees them overtake its held ones. */
    if (injectq_maybe_nonempty(&ts->inbox))
        injectq_push_chain(&ts->inbox, got.first, got.last);
    else
        take_in_chain(rt, &got);
}

/* At or before the earliest deadline held in any outbox; UINT64_MAX if
 * none holds a timer (seq_cst: the timer thread's half of the sleep
 * handshake with outbox_hold). */
static uint64_t outboxes_earliest(gs_runtime *rt)
{
    return atomic_load_explicit(&rt->timers->held_hint_ns, memory_order_seq_cst);
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* ---- the thread ---------------------------------------------------------- */

int timer_thread_state_init(timer_service *ts)
{
    ts->by_target = gs_calloc((GS_MAX_SERVERS >> TARGET_CHUNK_SHIFT) + 1, sizeof *ts->by_target);
    if (ts->by_target == NULL)
        return GS_ENOMEM;
    ts->wheel = alloc_should_fail() ? NULL : wheel_new(0);
    if (ts->wheel == NULL) {
        free(ts->by_target);
        ts->by_target = NULL;
        return GS_ENOMEM;
    }
    for (unsigned b = 0; b < SUB_BUCKETS; b++)
        ts->buckets[b].prev = ts->buckets[b].next = &ts->buckets[b];
    ts->buckets_used = 0;
    ts->bucket_tick = 0;
    ts->free_cache.n = 0;
    msg_cache_init(&ts->msgs);
    ts->oom_logged = false;
    ts->alive_cache = GS_NOPID;
    lateness_init(&ts->lateness);
    atomic_init(&ts->held, 0);
    return GS_OK;
}

void timer_thread_state_destroy(timer_service *ts)
{
    if (ts->by_target == NULL)
        return;
    for (uint32_t c = 0; c <= (GS_MAX_SERVERS >> TARGET_CHUNK_SHIFT); c++)
        free(ts->by_target[c]);
    free(ts->by_target);
    ts->by_target = NULL;
    wheel_free(ts->wheel);
    ts->wheel = NULL;
    msg_cache_destroy(&ts->msgs); /* every server is gone, and its messages with it */
    for (owed_purge *n = atomic_exchange_explicit(&ts->owed, NULL, memory_order_acquire), *next; n != NULL;
         n = next) {
        next = n->next;
        free(n); /* the thread has stopped: the wheel goes whole */
    }
}

void *timer_main(void *arg)
{
    gs_runtime *rt = arg;
    timer_service *ts = rt->timers;
    (void)injectq_try_lock(&ts->inbox); /* the only consumer, for good */
    (void)prctl(PR_SET_TIMERSLACK, TIMER_SLACK_NS, 0, 0, 0); /* best effort */
    (void)prctl(PR_SET_NAME, "gs-timer", 0, 0, 0);              /* for top, perf and gdb */
    uint64_t promoted_ns = 0;
    while (!atomic_load_explicit(&ts->quit, memory_order_acquire)) {
        drain_inbox(rt, INBOX_BATCH);
        purge_owed_pids(rt);
        uint64_t now = now_ns();
        /* Held timers may be due to come in: walk the outboxes, once the
         * inbox is empty (their threads' older timers may be in it, and
         * must reach the wheel first), or when the earliest held is
         * close to its deadline (then they go behind the inbox, see
         * sweep_outboxes). */
        uint64_t held_at = outboxes_earliest(rt);
        if (held_at < now + HOLD_AHEAD_NS && (held_at < now + HELD_URGENT_NS || !injectq_maybe_nonempty(&ts->inbox)))
            sweep_outboxes(rt, now + HOLD_AHEAD_NS);
        /* The servers this makes runnable reach the workers in batches. */
        run_batch batch;
        scheduler_batch_begin(rt, &batch);
        serve(rt, now);
        scheduler_batch_end(&batch);
        /* The backstop for deferred call timeouts (scheduler.c): while
         * any worker holds some, look every DEFER_CHECK_NS. */
        bool deferrals = scheduler_has_unarmed(rt);
        if (deferrals && now - promoted_ns >= DEFER_CHECK_NS) {
            scheduler_promote_stalled(rt, now);
            promoted_ns = now;
        }
        uint64_t next = next_work_ns(ts);
        if (deferrals && next > promoted_ns + DEFER_CHECK_NS)
            next = promoted_ns + DEFER_CHECK_NS;
        /* Wake up in time to take in the held timers (timer_outbox.c)
         * HOLD_AHEAD_NS before the earliest is due. */
        uint64_t held = outboxes_earliest(rt);
        if (held < add_sat(next, HOLD_AHEAD_NS))
            next = held > HOLD_AHEAD_NS ? held - HOLD_AHEAD_NS : 0;
        if (next <= now_ns() || injectq_maybe_nonempty(&ts->inbox) ||
            atomic_load_explicit(&ts->owed, memory_order_relaxed) != NULL)
            continue;
        if (next - now > IDLE_TRIM_NS)
            msg_cache_trim(&ts->msgs); /* a lull: give back what a burst left cached */
        uint32_t bell = atomic_load_explicit(&ts->bell, memory_order_acquire);
        atomic_store_explicit(&ts->backlog, 0, memory_order_relaxed);
        atomic_store_explicit(&ts->sleep_until_ns, next, memory_order_seq_cst);
        atomic_store_explicit(&ts->sleeping, 1, memory_order_seq_cst);
        store_load_fence();
        /* seq_cst re-checks: the inbox pairs with submit()'s push and flag
         * loads; the deferral lists with scheduler_defer_timeout's fence
         * (a list that filled after we looked makes the sleep a nap). */
        if (!deferrals && scheduler_has_unarmed(rt))
            next = now_ns() + DEFER_CHECK_NS;
        /* ... and the outboxes pair with outbox_hold's push and loads: a
         * timer held since we looked, and due before we would take it in,
         * makes us look again. */
        if (!injectq_maybe_nonempty(&ts->inbox) && outboxes_earliest(rt) >= add_sat(next, HOLD_AHEAD_NS) &&
            !atomic_load_explicit(&ts->quit, memory_order_seq_cst) &&
            atomic_load_explicit(&ts->owed, memory_order_seq_cst) == NULL /* pushed before the bell rang */) {
            if (next == UINT64_MAX) {
                futex_wait_until(&ts->bell, bell, NULL);
            } else {
                struct timespec at = ns_to_timespec(next);
                futex_wait_until(&ts->bell, bell, &at);
            }
        }
        atomic_store_explicit(&ts->sleeping, 0, memory_order_relaxed);
    }
    return NULL;
}

static void free_pending(wheel_timer *wt, void *arg)
{
    timer_rec *r = rec_from_wheel(wt);
    r->where = AT_NOWHERE;
    rec_free(((gs_runtime *)arg)->timers, r);
}

/* After the thread stopped and every server is gone: takes in what is
 * left in the outboxes and the inbox and frees every record still held,
 * with its message (pool_destroy then frees the records' memory). The
 * outboxes first: the workers' (joined, so nobody pushes to them) and the
 * outside threads', taken as their caches are detached. Until then a
 * thread that exits flushes its outbox into the inbox (its exit hook), so
 * a drain before could miss what it pushed, or stop at its half-done push;
 * after it, nobody hands this runtime anything, and the drain is whole. */
void timer_service_free_all(gs_runtime *rt)
{
    timer_service *ts = rt->timers;
    outbox_chain got = {NULL, NULL};
    uint64_t kept_min = UINT64_MAX;
    for (unsigned i = 0; i < rt->nworkers; i++)
        (void)outbox_take(&rt->workers[i].timer_side.outbox, UINT64_MAX, &got, &kept_min);
    thread_caches_detach(rt, &got);
    take_in_chain(rt, &got);
    drain_inbox(rt, UINT_MAX);
    wheel_advance(ts->wheel, UINT64_MAX, free_pending, rt);
    for (unsigned b = 0; b < SUB_BUCKETS; b++) {
        wheel_timer *head = &ts->buckets[b];
        while (head->next != head) {
            timer_rec *r = rec_from_wheel(head->next);
            bucket_unlink(ts, r);
            rec_free(ts, r);
        }
    }
}

int gs_timer_lateness_get(gs_runtime *rt, gs_timer_lateness *out)
{
    if (rt == NULL || out == NULL)
        return GS_EINVAL;
    memset(out, 0, sizeof *out);
    timer_service *ts = rt->timers;
    if (ts == NULL)
        return GS_OK;
    /* relaxed: lone counters (timer_lateness.h). The sum is taken from
     * the buckets as read, so that a percentile's ranks add up. */
    for (unsigned b = 0; b < GS_LATENESS_BUCKETS; b++) {
        out->buckets[b] = atomic_load_explicit(&ts->lateness.buckets[b], memory_order_relaxed);
        out->fired += out->buckets[b];
    }
    out->max_ns = atomic_load_explicit(&ts->lateness.max_ns, memory_order_relaxed);
    return GS_OK;
}

uint64_t timer_service_held(gs_runtime *rt)
{
    return rt->timers != NULL ? atomic_load_explicit(&rt->timers->held, memory_order_relaxed) : 0;
}
