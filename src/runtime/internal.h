/* internal.h - the runtime's shared structures. Public names are gs_*;
 * internal functions are <module>_<verb>, named after their file. */
#ifndef GS_RUNTIME_INTERNAL_H
#define GS_RUNTIME_INTERNAL_H

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../queue/idxstack.h"
#include "../queue/injectq.h"
#include "../queue/mailbox.h"
#include "../queue/runq.h"
#include "../queue/wheel.h"
#include "genserver.h"
#include "fiber.h"
#include "pool.h"
#include "timer_outbox.h"

/* ---- pids ------------------------------------------------------------
 * gs_pid = generation (32 bits) | runtime tag (8 bits) | slot index (24).
 * The tag (1..255) makes a pid of another runtime fail the lookup; the
 * generation makes a pid of an earlier server in the same slot fail. */
#define PID_INDEX_BITS 24
#define PID_INDEX_MASK ((1u << PID_INDEX_BITS) - 1)
#define PROC_CHUNK_SHIFT 12

static inline gs_pid pid_make(uint32_t gen, uint32_t rt_tag, uint32_t idx)
{
    return (gs_pid)gen << 32 | (gs_pid)rt_tag << PID_INDEX_BITS | idx;
}
static inline uint32_t pid_gen(gs_pid p) { return (uint32_t)(p >> 32); }
static inline uint32_t pid_tag(gs_pid p) { return (uint32_t)(p >> PID_INDEX_BITS) & 0xFF; }
static inline uint32_t pid_index(gs_pid p) { return (uint32_t)p & PID_INDEX_MASK; }

/* ---- messages -------------------------------------------------------- */
enum msg_kind {
    MSG_CAST,
    MSG_CALL, /* carries a reply ticket */
    MSG_INFO,
    MSG_STOP, /* carries the reason and, if somebody waits, a ticket */
    MSG_IDLE, /* the idle-timeout timer came due (see timers.c) */
    MSG_MONITOR,   /* target side: start watching (data: gs_ref) */
    MSG_DEMONITOR, /* target side: forget a monitor (data: gs_ref) */
    MSG_DOWN,      /* watcher side: tag GS_TAG_DOWN, data gs_down */
    MSG_LINK,      /* data: the linking pid */
    MSG_UNLINK,    /* data: the unlinking pid */
    MSG_EXIT,      /* tag GS_TAG_EXIT, data gs_exit_signal */
    MSG_KILL,      /* wakes a killed server (the flag is in ctl) */
    MSG_TICK,      /* an interval timer's tick: ticket names the timer (see timers_tick_current) */
};

/* A reply ticket: which reply slot, and which use of it. */
typedef struct ticket {
    uint32_t slot; /* UINT32_MAX: nobody waits */
    uint64_t seq;
} ticket;
#define TICKET_NONE ((ticket){UINT32_MAX, 0})

typedef struct msg {
    mbox_node node; /* must be first: mailboxes link messages through it */
    uint32_t tag;
    uint8_t kind;
    int32_t reason; /* MSG_STOP */
    gs_pid sender;
    ticket ticket;
    size_t len;
    struct msg_cache *home; /* the cache it goes back to (msg_cache.h), or NULL: malloc's */
    alignas(max_align_t) unsigned char data[];
} msg;

/* Whether m counts against a bounded mailbox (gs_start_opts): the user's
 * casts, calls and requests, and timer messages; never stop requests or
 * the runtime's own messages (its tags: a request's outcome, say, is an
 * info message, and must arrive whatever the bound). */
static inline bool msg_bounded(const msg *m)
{
    return m->kind == MSG_CAST || m->kind == MSG_CALL || m->kind == MSG_TICK ||
           (m->kind == MSG_INFO && m->tag < GS_TAG_RUNTIME_BASE);
}

/* ---- servers (procs) --------------------------------------------------
 * A proc lives in a type-stable slot of the process table: its memory is
 * never freed while the runtime lives, only its state and messages are.
 * ctl packs generation | OPEN | sender references (see proc_table.c). */
#define CTL_OPEN (UINT64_C(1) << 31)      /* accepts every message */
#define CTL_STOPPABLE (UINT64_C(1) << 30) /* accepts stop requests (also while terminating) */
#define CTL_KILLED (UINT64_C(1) << 29)    /* gs_kill: leave after the current callback */
#define CTL_OPTS (UINT64_C(1) << 28)      /* started with gs_start_opts: p->extra->opts is set and stable */
#define CTL_SHUTDOWN (UINT64_C(1) << 27)  /* gs_runtime_stop could not allocate a stop request */
#define CTL_REFS_MASK (CTL_SHUTDOWN - 1)

typedef struct pending_calls {
    uint32_t count, cap;
    ticket items[];
} pending_calls;

struct timer_rec;

/* What few servers need, allocated on first use (owner only). */
/* What gs_start_opts asked for, and the statistics it keeps. Allocated
 * before the server opens and never moved while it lives, so senders and
 * gs_server_info_get may read it (they hold a reference on the slot). */
typedef struct proc_opts {
    size_t mailbox_max; /* 0: unbounded */
    int overflow;       /* GS_OVERFLOW_* */
    bool stats;
    _Atomic uint64_t refused, dropped; /* by senders / by the owner */
    _Atomic uint64_t handled, hwm, callback_ns; /* written by the owner */
} proc_opts;

typedef struct proc_extra {
    proc_opts *opts; /* NULL unless started with gs_start_opts */
    pending_calls *deferred;     /* calls answered later (GS_NOREPLY) */
    pending_calls *stop_waiters; /* gs_stop callers waiting for the end */
    pending_calls *requests;     /* gs_send_request from its callbacks, maybe still open */
    int idle_ms;                 /* 0: no idle timeout */
    gs_timer idle_timer;         /* armed idle check, or 0 */
    uint64_t idle_seq;           /* numbers the armings: stale checks are ignored */
    uint64_t last_activity_ns;   /* when the server last handled a message */
    bool idle_arm_failed;        /* the last arming found no record (logged once: idle_arm) */
    struct mon_rec *monitors;    /* monitors watching this server */
    struct mon_rec *mon_cursor;  /* where the sweep of dead watchers' records goes on (monitors.c) */
    fiber *fiber;                /* the suspended callback's stack, until resumed */
    _Atomic uint32_t resume_latch; /* 2 at suspension: the worker leaving and the reply each take 1 */
    /* The call the suspended callback waits in (its reply slot's ticket)
     * and the server whose callback made it (this one, or an init run
     * inside its callback), for the worker's look at gs_kill after the
     * switch (scheduler.c, run_turn). Kept here, not in the fiber, whose
     * record every turn touches. */
    uint32_t wait_slot;
    uint64_t wait_seq;
    struct proc *wait_caller;
    bool stop_reason_set;        /* gs_set_exit_reason: GS_STOP exits with stop_reason */
    int stop_reason;
    gs_pid *links;               /* linked servers */
    uint32_t nlinks, cap_links, gone_links; /* a hash set, see links.c */
} proc_extra;

typedef struct proc {
    /* --- written by senders --- */
    alignas(64) _Atomic uint64_t ctl;
    mailbox mb; /* head: senders; tail, stub: the worker running the proc */
    /* --- the scheduler --- */
    mbox_node runq_link; /* link in the global queue */
    /* --- owner: the thread running the proc's callbacks --- */
    const gs_server_ops *ops;
    void *state;
    _Atomic uint64_t enqueued; /* senders: messages pushed so far */
    gs_pid pid;
    uint32_t last_tag;
    int exit_reason;
    /* The call being handled (a ticket, split around `dequeued` so that
     * both fit the proc's second cache line). */
    uint32_t current_slot;
    /* Messages taken so far (32-bit, wrapping): the mailbox length is
     * (uint32_t)enqueued - dequeued. Written only by the owner, with a
     * plain store once per turn, on the owner's own cache line: senders
     * never contend on it (only bounded mailboxes and gs_server_info_get
     * read it). */
    _Atomic uint32_t dequeued;
    uint64_t current_seq;
    proc_extra *extra;   /* NULL until needed */
    /* --- the registry, under its lock --- */
    struct reg_entry *names; /* names registered for this server */
    _Atomic uint32_t free_link; /* free list of slots */
    /* --- owner (packed here to keep a proc in two cache lines) --- */
    bool exiting;           /* stop after the current message */
    bool replied;           /* gs_reply for the current call happened */
    bool trap_exits;        /* exit signals become GS_TAG_EXIT messages */
} proc;

/* ---- reply slots (reply.c) ------------------------------------------- */
typedef struct reply_slot {
    alignas(64) _Atomic uint64_t state; /* seq << 2 | RS_* */
    _Atomic uint32_t bell;              /* futex word: bumped by a completer that saw `sleeping` */
    _Atomic uint32_t sleeping;
    /* Written by the waiter before it publishes WAITING, read by the
     * completer after it won WAITING -> WRITING. */
    void *buf;
    size_t cap;
    uint64_t deadline_ns; /* the completer turns a late reply into GS_ETIMEDOUT */
    /* A suspended server to resume, or NULL (a thread on the futex).
     * Atomic: gs_kill looks for its target's waits among all slots
     * (reply_slot_interrupt), whatever their state. */
    _Atomic(struct proc *) waiter;
    /* The server whose callback made the call: the waiter, or a server
     * whose init runs inside the waiter's callback (gs_start from a
     * callback). gs_kill of either ends the call. Atomic as waiter. */
    _Atomic(struct proc *) caller;
    struct async_req *async; /* a gs_send_request (request.c), or NULL */
    /* async is an outside thread's request, which only its waiter frees
     * (gs_wait_request); a server's is freed by its completer at any
     * time, so gs_wait_request must not look into it. Written before the
     * slot is published (see reply_slot_take), read by gs_wait_request. */
    _Atomic bool thread_request;
    /* Written by the completer before DONE, read by the waiter after. */
    size_t len;
    uint64_t seq; /* the waiter's own counter */
    int status;   /* written by the completer, with len */
    _Atomic uint32_t free_link;
    /* The wheel timer armed for a suspended caller's timeout, 0 if none:
     * reply_timeout_arm notes it, the caller's collect cancels it. */
    _Atomic gs_timer timer;
} reply_slot;

#define REPLY_CHUNK_SHIFT 10
#define REPLY_SLOTS_MAX (1u << 22) /* one per concurrent waiter */

/* ---- workers and the runtime ------------------------------------------ */
/* A worker's last look at another worker's LIFO slot (scheduler.c). */
typedef struct next_watch {
    uint32_t turns;
    bool had_next;
} next_watch;

typedef struct worker {
    runq rq;
    gs_runtime *rt;
    unsigned index;
    pthread_t thread;
    uint32_t lifo_streak; /* LIFO-slot runs in a row, for fairness */
    uint32_t spin_ns;     /* how long this worker spins before it parks (scheduler.c) */
    bool spin_gave_up;    /* its last spin ended without work */
    uint8_t global_tick;  /* looks at the ring, for find_work's look at the global queue (in padding) */
    _Atomic uint32_t turns; /* turns started: a thief sees whether the owner is stuck in one */
    next_watch next_seen[GS_MAX_WORKERS]; /* this worker's watch over the others' LIFO slots */
    uint64_t rng;
    fiber_home home; /* the worker's own stack, which fibers return to */
    fiber *spare;    /* the fiber for the next turn */
    fiber *running;  /* the fiber a turn runs on now, or NULL */
    /* Timeouts of calls suspended on this worker, not yet on the wheel:
     * most replies come within a few turns, so arming a timer for each
     * call is deferred (scheduler.c). Guarded by unarmed_lock, because an
     * idle or busy *other* worker arms them too: this worker may be stuck
     * in a long callback right after the call suspended. Entries
     * [0, old_unarmed) were deferred before the last promotion (the rest
     * are young); promoted_at_ns is when that was. */
    struct deferred_timeout { ticket t; uint64_t deadline; } *unarmed;
    uint32_t cap_unarmed, turns_since_arm, old_unarmed;
    _Atomic uint64_t promoted_at_ns; /* relaxed: a hint outside the lock */
    _Atomic uint32_t nunarmed; /* read without the lock as a hint */
    atomic_bool unarmed_lock;
    pool_cache reply_cache; /* free reply slots (reply.c) */
    timer_arming timer_side; /* free timer records, armed ones held (timers.c, timer_outbox.c) */
    /* statistics: written by this worker, read by gs_runtime_stats_get */
    _Atomic uint64_t messages, parks, suspended, resumed, blocked;
} worker;

struct thread_cache;

struct gs_runtime {
    uint32_t tag;
    uint64_t serial; /* unique per runtime started in this process */
    unsigned nworkers;
    worker *workers;

    /* scheduler */
    injectq global;
    alignas(64) _Atomic uint32_t epoch; /* futex word of the parked workers */
    _Atomic int sleepers;
    _Atomic int spinning;
    atomic_bool exiting;
    _Atomic unsigned spinning_waiters; /* reply.c: callers spinning for a reply */
    /* Threads outside the runtime inside a blocking wait (gs_call, gs_stop,
     * gs_wait_request): gs_runtime_stop frees nothing until they have left
     * (runtime_wait_enter / runtime_wait_leave). */
    _Atomic unsigned outside_waiters;
    fiber_pool *fibers;

    /* process table */
    pool procs;
    _Atomic(_Atomic uint64_t *) *slot_marks; /* proc_table.c: a mark per slot, in chunks */
    pthread_mutex_t marks_lock;              /* makes a chunk of marks */
    alignas(64) _Atomic uint32_t live; /* servers started and not yet gone */
    atomic_bool stopping;
    _Atomic uint64_t opened; /* servers opened so far (gs_runtime_stop rescans when it moves) */

    /* reply slots */
    pool replies;

    /* timers (timers.c) */
    struct timer_service *timers;
    struct thread_cache *thread_caches; /* outside threads' record caches (thread_cache.c) */

    /* monitors (monitors.c) */
    pool monitors;
    _Atomic uint64_t monitors_in_use; /* records taken and not yet freed, for gs_runtime_stats */

    /* names (registry.c) */
    _Atomic(struct cds_lfht *) names; /* created by the first gs_register */
    pthread_mutex_t reg_lock;

    /* logging */
    pthread_mutex_t log_lock;
    gs_log_fn log_fn;
    void *log_user;
};

static inline ticket proc_current_call(const proc *p)
{
    return (ticket){p->current_slot, p->current_seq};
}

static inline void proc_set_current_call(proc *p, ticket t)
{
    p->current_slot = t.slot;
    p->current_seq = t.seq;
}

/* pushed - taken as 32-bit counts, 0 when `taken` is ahead: the two are
 * read one after the other, and senders and the owner move them between
 * the reads (a turn may take messages pushed after `pushed` was read), so
 * the difference can briefly go below zero; unclamped, it read as some
 * four billion, and a bounded mailbox refused a cast for it. */
static inline uint32_t mailbox_waiting(uint32_t pushed, uint32_t taken)
{
    int32_t d = (int32_t)(pushed - taken);
    return d < 0 ? 0 : (uint32_t)d;
}

/* Messages waiting in p's mailbox (including the current turn's). */
static inline uint32_t proc_mailbox_len(proc *p)
{
    uint32_t pushed = (uint32_t)atomic_load_explicit(&p->enqueued, memory_order_relaxed);
    return mailbox_waiting(pushed, atomic_load_explicit(&p->dequeued, memory_order_relaxed));
}

/* The runtime of a server: from its pid's tag (keeps a proc in two cache
 * lines). runtime.c fills the table when runtimes start and stop. */
extern gs_runtime *runtime_by_tag[GS_MAX_RUNTIMES + 1];
static inline gs_runtime *proc_rt(const proc *p)
{
    return runtime_by_tag[pid_tag(p->pid)];
}

/* ---- thread-local context ---------------------------------------------- */
/* Both are read again after every fiber switch (a callback may resume on
 * another thread): the accessors are not inlined so that no compiler
 * caches a thread-local address across a switch. */
extern _Thread_local worker *tl_worker __attribute__((tls_model("initial-exec")));
extern _Thread_local proc *tl_proc __attribute__((tls_model("initial-exec")));
worker *current_worker(void) __attribute__((noinline));
/* The calling thread's worker if it is one of rt's, else NULL. */
worker *worker_of(gs_runtime *rt);
proc *current_proc(void) __attribute__((noinline));
void set_current_proc(proc *p) __attribute__((noinline));
/* The servers whose callbacks are running an init on this thread (gs_start
 * from a callback, or from an init), innermost first: one frame on the
 * stack of each such gs_start. Such a server cannot answer a call or a
 * stop until the init returns, so waiting on it is refused with
 * GS_EDEADLK like waiting on oneself (msg_check_target). A worker's list
 * is empty between turns: a callback that suspends takes its list with
 * it (send_and_wait). */
typedef struct init_frame {
    proc *outer;              /* the server whose callback (or init) runs this init */
    struct init_frame *prev;  /* the frame of the gs_start that runs `outer`'s own init, or NULL */
} init_frame;
init_frame *current_init_frames(void) __attribute__((noinline));
void set_current_init_frames(init_frame *f) __attribute__((noinline));
/* Whether this thread runs an init inside a callback (or init) of server
 * `pid` of rt, or of any server of rt for GS_NOPID. */
bool init_frames_wait_on(gs_runtime *rt, gs_pid pid);

/* ---- module functions ------------------------------------------------- */
/* proc_table.c */
int proc_table_alloc(gs_runtime *rt, proc **out);
void proc_table_free(gs_runtime *rt, proc *p);
int proc_acquire(gs_runtime *rt, gs_pid pid, uint64_t need, proc **out);
int proc_acquire_word(gs_runtime *rt, gs_pid pid, uint64_t need, proc **out, uint64_t *word);
void proc_release(proc *p);
void proc_open(proc *p, uint64_t extra_bits);
/* Clears OPEN; returns the control word as it was just before. */
uint64_t proc_close_begin(proc *p);
void proc_close_end(proc *p);
void proc_wait_senders(proc *p);
int proc_table_init(gs_runtime *rt);
static inline proc *proc_table_at(gs_runtime *rt, uint32_t idx)
{
    return pool_at(&rt->procs, idx);
}

/* A slot's mark (proc_table.c): generation << 32 | MARK_* bits, kept
 * beside the proc, on lines written only when a server opens, closes or
 * gets its first timer, so that a thread asking whether a server lives
 * reads a line no sender writes. */
#define MARK_OPEN (UINT64_C(1) << 0)   /* the server accepts messages (CTL_OPEN, read-mostly copy) */
#define MARK_TIMERS (UINT64_C(1) << 1) /* a timer was armed for it: purge at exit */
static inline _Atomic uint64_t *slot_mark(gs_runtime *rt, uint32_t idx)
{
    if (idx >= GS_MAX_SERVERS)
        return NULL;
    /* acquire: pairs with the release store that published the chunk. */
    _Atomic uint64_t *chunk =
        atomic_load_explicit(&rt->slot_marks[idx >> PROC_CHUNK_SHIFT], memory_order_acquire);
    return chunk == NULL ? NULL : &chunk[idx & ((1u << PROC_CHUNK_SHIFT) - 1)];
}

/* Whether pid is a live server, from its mark: no reference, and no line
 * that senders write. The answer may be stale by a racing open or close,
 * as any answer about another thread's server is; ctl stays the
 * authority for delivering. */
static inline bool slot_mark_alive(uint64_t mark, gs_pid pid)
{
    return (uint32_t)(mark >> 32) == pid_gen(pid) && (mark & MARK_OPEN) != 0;
}
uint32_t proc_table_high_water(gs_runtime *rt);
void proc_table_destroy(gs_runtime *rt);

/* runtime.c: a thread outside the runtime enters a wait for an outcome
 * before it sends what the outcome answers, and leaves after its last
 * access to the runtime; gs_runtime_stop waits for every one to leave. */
void runtime_wait_enter(gs_runtime *rt);
void runtime_wait_leave(gs_runtime *rt);

/* reply.c */
int reply_slot_take(gs_runtime *rt, void *buf, size_t cap, uint64_t deadline_ns, proc *waiter, proc *caller,
                    struct async_req *async, bool thread_request, ticket *out);
reply_slot *reply_slot_of(gs_runtime *rt, uint32_t idx);
void reply_slot_release(gs_runtime *rt, reply_slot *s, uint32_t idx);
void reply_slot_sleep(reply_slot *s, uint64_t seen, uint64_t deadline_ns);
void reply_slot_ring(reply_slot *s);
int reply_slot_collect(gs_runtime *rt, ticket t, size_t *len_out);
/* Completes with `status` every call that server p is suspended in, or
 * whose callback (an init run inside another's) it is (gs_kill). */
void reply_slot_interrupt(gs_runtime *rt, proc *p, int status);
int reply_slot_wait(gs_runtime *rt, ticket t, uint64_t deadline_ns, size_t *len_out);
/* links.c: links parent (whose callback runs) and child (past its init,
 * not yet able to run), both sides at once: no message, so no moment in
 * which the child could exit unlinked. GS_OK or GS_ENOMEM. */
int links_join_new(proc *parent, proc *child);
/* server.c: gs_start for a server whose callback runs (`parent`): the new
 * server is linked to it before it can take a message (OTP's start_link),
 * so an exit right after its init reaches the parent as an exit signal. */
int server_start_linked(gs_ctx *parent, const gs_server_ops *ops, const void *arg, gs_pid *out);
/* request.c: frees a request nobody collected (reply_table_destroy). */
void request_discard(struct async_req *a);
void reply_slot_abandon(gs_runtime *rt, ticket t);
int reply_slot_complete(gs_runtime *rt, ticket t, int status, const void *data, size_t len);
int reply_table_init(gs_runtime *rt);
void reply_table_destroy(gs_runtime *rt);
bool reply_ticket_waiting(gs_runtime *rt, ticket t);
/* A timer function: completes ticket (slot, seq) with GS_ETIMEDOUT. */
void reply_timed_out(gs_runtime *rt, uint64_t slot, uint64_t seq);
/* Arms the wheel timer for a suspended caller's timeout (reply_timed_out
 * at deadline_ns) and notes it in the slot, so that the caller's collect
 * gives the record back when the call ends otherwise. As timers_arm_fn. */
int reply_timeout_arm(gs_runtime *rt, ticket t, uint64_t deadline_ns);
gs_from reply_from_ticket(gs_runtime *rt, ticket t);
int reply_ticket_from(gs_runtime *rt, gs_from from, ticket *out);

/* scheduler.c */
int scheduler_start(gs_runtime *rt);
void scheduler_stop(gs_runtime *rt);    /* joins the workers */
void scheduler_destroy(gs_runtime *rt); /* frees them: after timers_stop (the timer thread reads them) */
void scheduler_make_runnable(gs_runtime *rt, proc *p);
/* A thread outside the pool that makes many servers runnable in a burst
 * (the timer thread firing a tick's timers) collects them between these
 * two calls: scheduler_make_runnable then only links each server into the
 * batch, and the batch reaches the global queue with one exchange and
 * wakes as many sleeping workers as it needs with one system call, every
 * RUN_BATCH_MAX servers and at the end. Nothing that waits for one of the
 * batched servers may run in between. */
typedef struct run_batch {
    gs_runtime *rt;
    mbox_node *first, *last;
    unsigned n;
} run_batch;
void scheduler_batch_begin(gs_runtime *rt, run_batch *b);
void scheduler_batch_end(run_batch *b);
void scheduler_before_block(gs_runtime *rt);
/* Arms (later, if the call is still waiting then) the timeout of a call
 * suspended on this worker; once its deadline has passed, a promotion
 * completes the call itself instead. Otherwise the caller arms it itself:
 * GS_EAGAIN if the deadline is too near to defer (unless near_too),
 * GS_ENOMEM if it could not even be remembered. */
int scheduler_defer_timeout(worker *w, ticket t, uint64_t deadline, bool near_too);
/* The timer thread's side of deferred timeouts (scheduler.c): whether any
 * worker holds some (seq_cst loads, for the timer thread's sleep
 * handshake), and a promotion of every list its worker has not promoted
 * for a while (it may be stuck in a long callback, and so may the rest). */
bool scheduler_has_unarmed(gs_runtime *rt);
void scheduler_promote_stalled(gs_runtime *rt, uint64_t now);
#define DEFER_CHECK_NS 1000000u /* the timer thread's look at deferred timeouts, while there are any */

/* server.c */
bool server_run(proc *p);

/* messaging.c */
msg *msg_alloc(gs_runtime *rt, uint8_t kind, uint32_t tag, size_t len);
msg *msg_new(gs_runtime *rt, uint8_t kind, uint32_t tag, const void *data, size_t len);
/* Frees a message of any origin (any thread). */
void msg_free(msg *m);
/* Fills in a new message's header (msg_alloc, msg_cache_new). */
static inline void msg_header_init(msg *m, uint8_t kind, uint32_t tag, gs_pid sender, size_t len,
                                   struct msg_cache *home)
{
    m->tag = tag;
    m->kind = kind;
    m->reason = 0;
    m->sender = sender;
    m->ticket = TICKET_NONE;
    m->len = len;
    m->home = home;
}
int msg_check_target(gs_runtime *rt, gs_pid to, bool waits, struct proc **self);
int msg_send(gs_runtime *rt, gs_pid to, msg *m);
int msg_check_payload(gs_runtime *rt, uint32_t tag, const void *data, size_t len);
proc *msg_current_server(gs_runtime *rt); /* the server whose callback this thread runs, if of rt */
int timeout_to_deadline(int timeout_ms, uint64_t *deadline_ns);

/* timers.c */
int timers_start(gs_runtime *rt);
void timers_stop(gs_runtime *rt);
void timers_purge(gs_runtime *rt, proc *p);
uint64_t timer_service_held(gs_runtime *rt); /* timer_thread.c */
uint32_t timers_records_made(gs_runtime *rt); /* records the pool holds, free or not (tests) */
/* A worker's list of deferred timeouts went from empty to not: make sure
 * the timer thread looks at it within DEFER_CHECK_NS or so. */
void timers_notice_deferral(gs_runtime *rt);
int timers_arm_idle(proc *p, uint64_t deadline_ns, gs_timer *out);
/* server.c: arms p's idle check for due_ns; without a record to be had
 * (GS_TIMERS_MAX held, or memory) the timeout stays set, logged once,
 * and the server's next handled message arms it again. */
void idle_arm(proc *p, uint64_t due_ns);
/* server.c: remembers a request self sent (gs_send_request from a
 * callback), so that self's exit ends it. GS_OK or GS_ENOMEM. */
int server_track_request(proc *self, ticket t);
/* Whether the interval timer that sent tick m (MSG_TICK) is still pending:
 * a tick of a cancelled or purged one is dropped unhandled. */
bool timers_tick_current(gs_runtime *rt, const msg *m);
/* The handle of the timer named by a timer message's ticket (slot: the
 * record's index, seq: its generation). */
gs_timer timers_handle(gs_runtime *rt, ticket t);
/* Calls fn(rt, a, b) on the timer thread at deadline_ns (unless cancelled). */
/* As gs_cancel_timer, for the runtime's own timers too (gs_cancel_timer
 * refuses those: their handles are never given out). */
int timers_cancel(gs_runtime *rt, gs_timer t);
/* As timers_cancel, without waking the timer thread: a record it holds is
 * freed when it next wakes (by the timer's deadline at the latest). */
int timers_cancel_lazy(gs_runtime *rt, gs_timer t);
int timers_arm_fn(gs_runtime *rt, uint64_t deadline_ns, void (*fn)(gs_runtime *, uint64_t, uint64_t), uint64_t a,
                  uint64_t b, gs_timer *out);
proc_extra *proc_extra_get(proc *p);

/* monitors.c */
int monitors_init(gs_runtime *rt);
void monitors_destroy(gs_runtime *rt);
void monitors_on_monitor(proc *p, const msg *m);
void monitors_on_demonitor(proc *p, const msg *m);
bool monitors_on_down(proc *p, const msg *m); /* true: deliver to handle_info */
void monitors_drop_down(gs_runtime *rt, const msg *m);
void monitors_fire_all(proc *p, int reason);

/* registry.c */
int registry_init(gs_runtime *rt);
void registry_destroy(gs_runtime *rt);
void registry_release(gs_runtime *rt, proc *p);
void registry_thread_exit(void);
/* Whether name is one gs_register would take (not NULL, not empty, at
 * most GS_NAME_MAX bytes). */
bool registry_name_valid(const char *name);

/* links.c */
void links_on_link(proc *p, const msg *m);
void links_on_unlink(proc *p, const msg *m);
bool links_on_exit(proc *p, const msg *m); /* true: deliver to handle_info */
void links_fire_all(proc *p, int reason);

/* request.c */
int request_complete(gs_runtime *rt, reply_slot *s, ticket t, int status, const void *data, size_t len,
                     int rc);

/* log.c */
void log_init(gs_runtime *rt);
void log_destroy(gs_runtime *rt);
void log_write(gs_runtime *rt, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define DEADLINE_NEVER UINT64_MAX

#endif
