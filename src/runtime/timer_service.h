/* timer_service.h - what timers.c (arming, any thread) and timer_thread.c
 * (the thread that owns the wheel) share: the timer record and the
 * service. See timers.c for the design.
 */
#ifndef GS_RUNTIME_TIMER_SERVICE_H
#define GS_RUNTIME_TIMER_SERVICE_H

#include <stdlib.h>

#include "internal.h"
#include "msg_cache.h"
#include "timer_lateness.h"

#define TIMER_CHUNK_SHIFT 14 /* 16,384 records: 2 MiB */
#define TARGET_CHUNK_SHIFT 12 /* list heads per chunk of the by-target table */
#define TIMER_MAX GS_TIMERS_MAX /* records per runtime: pending timers, and cancelled ones not yet freed */
#define NS_PER_TICK 1000000u
/* The tick being served is split into SUB_BUCKETS buckets: a timer fires
 * at the end of the bucket holding its exact deadline, so it is late by
 * at most NS_PER_TICK / SUB_BUCKETS plus the thread's wake-up. */
#define SUB_BUCKETS 8u
#define NS_PER_SUB (NS_PER_TICK / SUB_BUCKETS)
/* Timers due at least this far ahead may wait in their arming thread's
 * outbox (timer_outbox.c); the timer thread takes an outbox when its
 * earliest deadline comes this close (held_hint_ns says when to look). */
#define HOLD_AHEAD_NS (4u * NS_PER_TICK)
/* A sleeping timer thread is woken after this many records pushed without
 * a nearer deadline (cancellations, far timers): they hold memory. */
#define BACKLOG_WAKE 4096u

/* The state word: generation << ST_GEN_SHIFT | ST_DRAINED? | TS_*. */
enum { TS_FREE = 0, TS_PENDING = 1, TS_DONE = 2, TS_CANCELLED = 3 };
#define ST_DRAINED 4u /* the timer thread has taken the record in */
#define ST_GEN_SHIFT 3
enum { TK_SEND, TK_PURGE, TK_FN, TK_NAMED }; /* TK_NAMED: gs_send_after_name, gs_send_interval_name */
enum { AT_NOWHERE, AT_WHEEL, AT_BUCKET }; /* where the timer thread keeps a record */
#define TIMER_INLINE_MAX 32u /* payloads up to this size sit in the record */

/* Two cache lines. The first holds what the timer thread reads for every
 * record it takes in (a timer cancelled before that costs it one line);
 * the second what a live timer needs besides. */
typedef struct timer_rec {
    /* --- line 1 --- */
    _Atomic uint64_t state; /* generation << ST_GEN_SHIFT | ST_DRAINED? | TS_* */
    mbox_node inbox_link;
    wheel_timer wt; /* in a wheel slot, or in a sub-tick bucket (wt.slot: which) */
    uint32_t idx;
    _Atomic uint32_t free_link;
    uint32_t tag;         /* TK_SEND with the payload inline */
    _Atomic uint8_t kind; /* TK_*; atomic: gs_cancel_timer reads it like target */
    /* TK_SEND: MSG_INFO, MSG_IDLE, or MSG_TICK (an interval timer); atomic
     * because gs_cancel_timer reads it like kind. */
    _Atomic uint8_t msg_kind;
    uint8_t len;          /* of the inline payload */
    /* One byte: the arming thread sets inline_data before it publishes the
     * record; the timer thread alone writes the rest afterwards. */
    uint8_t where : 2;       /* AT_* */
    uint8_t in_list : 1;     /* linked in the target's list */
    uint8_t inline_data : 1; /* TK_SEND: payload in u.data (else u.m) */
    /* --- line 2 --- */
    /* Atomic because gs_cancel_timer reads it while the record may be
     * recycled under it (the generation check discards such a read). */
    _Atomic gs_pid target;
    _Atomic uint64_t deadline_ns; /* atomic for the same reason (gs_read_timer) */
    struct timer_rec *proc_prev, *proc_next; /* the target slot's list (timer thread only) */
    union {
        struct {
            void (*fn)(gs_runtime *, uint64_t, uint64_t);
            uint64_t a, b;
        } call;       /* TK_FN */
        msg *m;       /* TK_SEND, payload too big to sit inline */
        /* TK_NAMED: the message (m's place, so rec_recycle frees it as m;
         * with MSG_TICK the template, as tick.tmpl), the interval (as
         * tick.interval_ns) and the name it goes to, looked up each time
         * the timer fires. */
        struct {
            msg *m;
            uint64_t interval_ns;
            char *name;
        } named;
        unsigned char data[TIMER_INLINE_MAX]; /* TK_SEND, inline */
        /* TK_SEND with msg_kind MSG_TICK (never inline): the message each
         * tick copies (m's place, so rec_recycle frees it as m), and the
         * interval between deadlines. */
        struct {
            msg *tmpl;
            uint64_t interval_ns;
        } tick;
    } u;
} timer_rec;

#define TIMER_REC_SIZE 128u
_Static_assert(sizeof(timer_rec) == TIMER_REC_SIZE, "a timer record is two cache lines");
_Static_assert(offsetof(timer_rec, u.named.m) == offsetof(timer_rec, u.tick.tmpl) &&
                   offsetof(timer_rec, u.named.interval_ns) == offsetof(timer_rec, u.tick.interval_ns),
               "fire_tick reads a named interval timer as any interval timer");
_Static_assert(offsetof(timer_rec, target) == 64, "the first line holds what every drain reads");

/* A purge asked for without a record (timers_purge). */
typedef struct owed_purge {
    struct owed_purge *next;
    gs_pid dead;
} owed_purge;

typedef struct timer_service {
    injectq inbox;
    pool recs;
    uint64_t base_ns; /* tick 0 */
    pthread_t thread;
    /* --- the timer thread only --- */
    wheel *wheel;
    wheel_timer buckets[SUB_BUCKETS]; /* list heads: due timers of tick bucket_tick */
    uint32_t buckets_used;            /* bit b: bucket b is non-empty */
    uint64_t bucket_tick;
    pool_cache free_cache; /* records the thread frees */
    msg_cache msgs;        /* the messages it sends, back from the workers that consumed them */
    /* Timers by target slot, so that a purge finds a dead server's
     * timers: list heads in chunks of TARGET_CHUNK slots, made on first
     * use. Kept here rather than in the proc, whose cache lines its
     * senders and owner write all the time. */
    struct timer_rec ***by_target;
    gs_pid alive_cache; /* a target found alive since the last purge (see take_in) */
    timer_lateness lateness; /* how late it fires (gs_timer_lateness_get) */
    _Atomic uint64_t held; /* records taken in (DRAINED) and not freed: written by the thread only */
    bool oom_logged;
    /* --- shared --- */
    alignas(64) _Atomic uint32_t bell;
    _Atomic uint32_t sleeping;
    _Atomic uint64_t sleep_until_ns; /* when the sleeping thread wakes */
    _Atomic uint32_t backlog;        /* records pushed while it sleeps */
    /* At or before the earliest deadline held in any outbox (UINT64_MAX:
     * none held): owners lower it, the timer thread resets it when it
     * walks the outboxes (timer_outbox.c, "The hint"). */
    alignas(64) _Atomic uint64_t held_hint_ns;
    atomic_bool quit;
    /* Exiting servers that found no record to ask for their purge with
     * (timers_purge): a stack of their pids (timer_thread.c,
     * purge_owed_pids). */
    _Atomic(struct owed_purge *) owed;
} timer_service;

static inline uint64_t state_word(uint64_t gen, unsigned st)
{
    return gen << ST_GEN_SHIFT | st;
}

static inline timer_rec *rec_from_inbox(mbox_node *n)
{
    return (timer_rec *)((char *)n - offsetof(timer_rec, inbox_link));
}

/* Gives a record nobody else uses any more back through cache c (its
 * freeing thread's), with the message it held outside if any. The state
 * keeps its generation: stale handles keep failing until reuse bumps it.
 * relaxed: the record reaches its next user through the pool. */
static inline void rec_recycle(timer_service *ts, timer_rec *r, pool_cache *c)
{
    uint8_t kind = atomic_load_explicit(&r->kind, memory_order_relaxed);
    if ((kind == TK_SEND || kind == TK_NAMED) && !r->inline_data) {
        msg_free(r->u.m);
        r->u.m = NULL;
    }
    if (kind == TK_NAMED) {
        free(r->u.named.name);
        r->u.named.name = NULL;
    }
    uint64_t w = atomic_load_explicit(&r->state, memory_order_relaxed);
    atomic_store_explicit(&r->state, state_word(w >> ST_GEN_SHIFT, TS_FREE), memory_order_relaxed);
    pool_free_cached(&ts->recs, c, r->idx);
}

/* The tick holding ns (0 for anything before the service started). */
static inline uint64_t tick_of_ns(const timer_service *ts, uint64_t ns)
{
    return ns <= ts->base_ns ? 0 : (ns - ts->base_ns) / NS_PER_TICK;
}

static inline uint64_t tick_start_ns(const timer_service *ts, uint64_t tick)
{
    return ts->base_ns + tick * NS_PER_TICK;
}

/* Whether pid is a live server right now, by its slot's control word
 * (one load, no reference): what the timer thread relies on. */
static inline bool target_alive(gs_runtime *rt, gs_pid pid)
{
    proc *p = proc_table_at(rt, pid_index(pid));
    if (p == NULL)
        return false;
    /* seq_cst (a plain load on x86): the timer thread's check after taking
     * a record in must see a close that preceded the record's push. */
    uint64_t w = atomic_load_explicit(&p->ctl, memory_order_seq_cst);
    return (uint32_t)(w >> 32) == pid_gen(pid) && (w & CTL_OPEN) != 0;
}

/* pid's slot mark (0 if pid is not of rt or its slot was never made):
 * what arming and cancelling threads ask, so that they read no line the
 * target's senders write (slot_mark in internal.h). acquire: pairs with
 * proc_open's release. */
static inline uint64_t target_mark(gs_runtime *rt, gs_pid pid, _Atomic uint64_t **where)
{
    _Atomic uint64_t *m = pid == GS_NOPID || pid_tag(pid) != rt->tag ? NULL : slot_mark(rt, pid_index(pid));
    if (where != NULL)
        *where = m;
    return m == NULL ? 0 : atomic_load_explicit(m, memory_order_acquire);
}

/* timers.c: pushes a chain of n records (earliest deadline given) to the
 * timer thread, waking it if it sleeps past that deadline. */
void timers_submit_chain(timer_service *ts, mbox_node *first, mbox_node *last, uint32_t n,
                         uint64_t min_deadline_ns);

/* timer_outbox.c. The owner: holds r (published, PENDING) in its outbox,
 * sending the outbox on when due (see there); sends everything held on.
 * The timer thread: the earliest deadline ob holds, or a little earlier
 * (UINT64_MAX: none), and taking ob's records (appended to `into`, oldest
 * first) if that is before horizon_ns. */
void outbox_hold(gs_runtime *rt, timer_arming *a, timer_rec *r);
void outbox_flush(gs_runtime *rt, timer_arming *a);
uint64_t outbox_earliest(timer_outbox *ob);
/* Takes ob whole into `into` if its earliest deadline is before
 * horizon_ns; else lowers *kept_min to that deadline. */
bool outbox_take(timer_outbox *ob, uint64_t horizon_ns, outbox_chain *into, uint64_t *kept_min);
/* The timer thread's walk (timer_thread.c, sweep_outboxes) ends with
 * this: lowers the hint to the earliest deadline left held. */
void outbox_hint_lower(timer_service *ts, uint64_t deadline_ns);

/* timer_thread.c */
void *timer_main(void *arg);
int timer_thread_state_init(timer_service *ts); /* GS_OK or GS_ENOMEM */
void timer_thread_state_destroy(timer_service *ts);
void timer_service_free_all(gs_runtime *rt);

#endif
