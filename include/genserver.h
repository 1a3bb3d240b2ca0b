/* genserver.h - Erlang/OTP's GenServer for C.
 *
 * A runtime (gs_runtime) runs many servers on a fixed pool of worker
 * threads. A server owns private state that only its own callbacks touch;
 * other code talks to it by pid with asynchronous casts and synchronous
 * calls. Callbacks of one server never run concurrently with each other.
 *
 *   gs_runtime *rt;  gs_runtime_start(&rt, NULL);   // one worker per CPU
 *   gs_pid c;        gs_start(rt, &counter_ops, NULL, &c);
 *   gs_cast(rt, c, INCR, NULL, 0);
 *   int64_t n;       gs_call(rt, c, GET, NULL, 0, &n, sizeof n, NULL, 5000);
 *   gs_stop(rt, c, GS_NORMAL, 5000);
 *   gs_runtime_stop(rt);
 *
 * Conventions
 *  - Every fallible function returns GS_OK (0) or a negative GS_E* code
 *    (genserver/status.h); gs_strerror() gives the sentence.
 *  - Every function may be called from any thread (outside threads and
 *    callbacks alike) unless it says otherwise.
 *  - A pid is a generation-tagged handle: once its server has stopped it
 *    is dead forever, even when the runtime reuses the server's slot. A
 *    stale, zero or made-up pid gives GS_ENOPROC and never touches freed
 *    memory.
 *  - Payloads are copied when sent ("share nothing"): the sender may reuse
 *    its buffer as soon as the call returns.
 *
 * Limits: at most GS_MAX_SERVERS servers alive at once per runtime, at
 * most GS_MAX_RUNTIMES runtimes alive at once per process, payloads of at
 * most GS_MSG_MAX bytes.
 */
#ifndef GENSERVER_H
#define GENSERVER_H

#include <stddef.h>
#include <stdint.h>

#include "genserver/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define GS_VERSION_MAJOR 0
#define GS_VERSION_MINOR 1

#define GS_MAX_SERVERS (1u << 24)        /* live servers per runtime */
#define GS_MAX_RUNTIMES 255              /* runtimes alive at once */
#define GS_MSG_MAX ((size_t)64 << 20)    /* largest payload: 64 MiB */
#define GS_MAX_WORKERS 256               /* largest worker pool */

/* ------------------------------------------------------------------ */
/* Types                                                               */
/* ------------------------------------------------------------------ */

typedef struct gs_runtime gs_runtime;
typedef uint64_t gs_pid; /* GS_NOPID (0) is never a server */
#define GS_NOPID ((gs_pid)0)

/* The running server; valid only during the callback it is passed to. */
typedef struct gs_ctx gs_ctx;

/* A pending call. It is a plain value: copy it to reply later, from any
 * thread, with gs_reply(). It stays safe to use after its caller gave up
 * (the reply is then dropped). */
typedef struct gs_from {
    uint64_t w[2];
} gs_from;

/* Tags at or above GS_TAG_RUNTIME_BASE belong to the runtime: casts and
 * calls with such a tag are refused with GS_EINVAL. */
#define GS_TAG_RUNTIME_BASE 0xFFFF0000u

typedef struct gs_msg {
    uint32_t tag;     /* message kind, chosen by the user; tags >= 0xFFFF0000 are the runtime's */
    const void *data; /* payload, copied at send time; valid until the callback returns;
                         aligned for any type (max_align_t); NULL when len is 0 */
    size_t len;
    gs_pid sender; /* the sending server, or GS_NOPID for outside threads and timers */
    /* The timer that sent it (gs_send_after, gs_send_interval, their _name
     * forms), else 0:
     * as the reference in erlang:start_timer's {timeout, Ref, Msg}, it
     * tells a server that re-arms its timer the current timer's message
     * from a late one of an earlier timer. */
    uint64_t timer;
} gs_msg;

/* A server's behaviour. Any callback may be NULL; the default is given
 * beside each. The ops structure must stay valid while any server started
 * with it lives (a static const is the usual choice). */
typedef struct gs_server_ops {
    const char *name;  /* shown in logs and crash reports; NULL: "(unnamed)" */
    size_t state_size; /* the runtime allocates this much zeroed state per server
                          (0 is allowed: state is then NULL) */

    /* Runs on the thread calling gs_start, before gs_start returns; `arg`
     * is gs_start's argument and may point at the caller's stack. Return
     * GS_OK to start, GS_STOP to refuse quietly (gs_start returns
     * GS_ECANCELED) or a negative code (gs_start returns it unchanged).
     * A refused server never existed: terminate is not called. Links and
     * monitors it made in init see it exit: with GS_NORMAL after GS_STOP
     * (a linked server is not harmed), else with init's code; with
     * GS_KILLED, whatever init returned, if gs_kill removed it meanwhile.
     * When gs_start is called from a callback (or from another init),
     * that server waits for this init: a gs_call or gs_stop to it from
     * here returns GS_EDEADLK, as one to the new server itself does (in
     * OTP such a call hangs until its timeout). Default: GS_OK. */
    int (*init)(gs_ctx *ctx, void *state, const void *arg);

    /* A gs_call. Reply with gs_reply(rt, from, ...) before returning GS_OK,
     * or return GS_NOREPLY and reply later (from any thread) with a copy of
     * `from`. Returning GS_OK without replying is a bug: the runtime logs
     * it and the caller gets GS_ENOREPLY at once. GS_STOP stops the server
     * (normal) after the callback; a negative code crashes it. A call still
     * unanswered when its server stops fails with GS_ENOPROC.
     * Default: the caller gets GS_ENOTSUP. */
    int (*handle_call)(gs_ctx *ctx, void *state, const gs_msg *msg, gs_from from);

    /* A gs_cast. Return GS_OK, GS_STOP or a negative code (crash).
     * Default: the message is dropped. */
    int (*handle_cast)(gs_ctx *ctx, void *state, const gs_msg *msg);

    /* A message from the runtime itself (tags >= GS_TAG_RUNTIME_BASE, and
     * timers, monitors and links as they are added). Returns as
     * handle_cast. Default: the message is dropped. */
    int (*handle_info)(gs_ctx *ctx, void *state, const gs_msg *msg);

    /* Runs exactly once for every server whose init succeeded, on the
     * server's own worker: on gs_stop (with its reason), on a callback
     * returning GS_STOP (GS_NORMAL) or a negative code (that code), and on
     * gs_runtime_stop (GS_SHUTDOWN). Afterwards the state is freed; any
     * resources it points to are the callback's to release. */
    void (*terminate)(gs_ctx *ctx, void *state, int reason);
} gs_server_ops;

typedef struct gs_runtime_opts {
    unsigned workers; /* 0: one per online CPU; at most GS_MAX_WORKERS */
} gs_runtime_opts;

/* ------------------------------------------------------------------ */
/* Runtime                                                             */
/* ------------------------------------------------------------------ */

/* Starts a runtime and its worker threads. `opts` may be NULL.
 * Returns GS_OK, GS_EINVAL (out is NULL, too many workers), GS_ENOMEM,
 * GS_ELIMIT (GS_MAX_RUNTIMES already alive) or GS_EAGAIN (a thread could
 * not be created). Idle workers sleep on a futex and use no CPU. */
int gs_runtime_start(gs_runtime **out, const gs_runtime_opts *opts);

/* Stops every server (terminate runs with GS_SHUTDOWN, after each server
 * has handled what was already in its mailbox), joins the workers and
 * frees everything. While it runs, gs_start returns GS_ESHUTDOWN. It waits
 * for callbacks that are running to return, and for threads outside the
 * runtime that are blocked in gs_call, gs_stop or gs_wait_request when it
 * begins (a call whose server stops without answering returns
 * GS_ENOPROC). Any other call on rt from another thread must be over
 * before it returns. Call it once, from a thread outside the runtime:
 * from inside a callback it returns GS_EDEADLK and does nothing (also
 * from an init that gs_start runs inside a callback or init of one of
 * rt's servers, whatever runtime that init belongs to). `rt` is
 * invalid afterwards; a pid or timer handle of it names nothing in the
 * runtimes started after it (they refuse it with GS_ENOPROC or GS_ENOENT)
 * until GS_MAX_RUNTIMES more have been started, as runtimes take the tag
 * in their pids in turn. Returns GS_OK or GS_EINVAL (rt NULL). */
int gs_runtime_stop(gs_runtime *rt);

/* What the runtime has done so far; every field is a running total
 * except the last five. Any thread; figures are read without stopping
 * the workers, so they are only consistent with each other roughly. */
typedef struct gs_runtime_stats {
    uint64_t messages;        /* messages handled by servers */
    uint64_t parks;           /* times a worker went to sleep */
    uint64_t calls_suspended; /* calls from callbacks that suspended their server */
    uint64_t calls_resumed;   /* ... and were resumed by a reply, timeout or exit */
    uint64_t calls_blocked;   /* calls from callbacks that had to hold their worker
                                 (no fiber stack could be had) */
    uint64_t stacks_in_use;   /* fiber stacks held: suspended callbacks + a spare per worker */
    uint64_t servers;         /* live servers */
    uint64_t workers;
    uint64_t timers;          /* timers the timer thread holds: armed ones it has taken in,
                                 and cancelled ones whose memory it has not freed yet */
    uint64_t monitors;        /* monitor records in use: active, or fired (or removed)
                                 and not yet freed, e.g. a DOWN not yet taken */
} gs_runtime_stats;

/* GS_OK, or GS_EINVAL for a NULL argument. */
int gs_runtime_stats_get(gs_runtime *rt, gs_runtime_stats *out);

/* How late the timer thread fires timers, over the runtime's life: for
 * each timer, from its deadline to when the thread hands its message to
 * the server's mailbox (or completes the call it timed out). That is the
 * timer service's share of a timer's lateness: the thread's wake-up, and
 * any time the host or other threads kept it off a CPU. The time the
 * message then waits for its server to take it is not in it. Counted for
 * one-shot timers, every tick of an interval timer and call timeouts; not
 * for cancelled timers. A histogram: buckets[0] holds lateness under
 * 1,024 ns; above that, each power of two [2^e, 2^(e+1)) ns is split into
 * 8 buckets of equal width, up to 2^33 ns (8.6 s), and the last bucket
 * holds everything later. */
#define GS_LATENESS_BUCKETS 186
typedef struct gs_timer_lateness {
    uint64_t fired;  /* timers counted (the sum of the buckets, read at about the same time) */
    uint64_t max_ns; /* the latest of them */
    uint64_t buckets[GS_LATENESS_BUCKETS];
} gs_timer_lateness;

/* Copies rt's lateness histogram into *out. Any thread; the figures are
 * read while the timer thread may be adding to them, so they are only
 * consistent with each other roughly. GS_OK, or GS_EINVAL for a NULL
 * argument. Subtracting two reads bucket by bucket gives the histogram of
 * the timers fired in between. */
int gs_timer_lateness_get(gs_runtime *rt, gs_timer_lateness *out);

/* The lateness at or under which num/den of the timers in `l` fired: the
 * upper bound of the bucket holding that rank (nearest rank), so within
 * an eighth above the true value, and never above l->max_ns unless that is
 * 0. Returns 0 if `l` is NULL or counts no timer, or num > den or den 0. */
uint64_t gs_timer_lateness_percentile(const gs_timer_lateness *l, uint64_t num, uint64_t den);

/* ------------------------------------------------------------------ */
/* Servers                                                             */
/* ------------------------------------------------------------------ */

/* Starts a server: allocates its state, runs ops->init (see above) and
 * stores the new pid in *out (which may be NULL). Returns GS_OK,
 * GS_ECANCELED (init returned GS_STOP), init's negative code, GS_EINVAL
 * (rt or ops NULL, state_size larger than GS_MSG_MAX), GS_ENOMEM,
 * GS_ELIMIT (GS_MAX_SERVERS alive) or GS_ESHUTDOWN. */
int gs_start(gs_runtime *rt, const gs_server_ops *ops, const void *arg, gs_pid *out);

/* Options for gs_start_opts. Zero-initialise, then set what you need. */
enum { GS_OVERFLOW_REJECT = 0, GS_OVERFLOW_DROP_OLDEST = 1 };
typedef struct gs_start_opts {
    size_t mailbox_max; /* 0: unbounded (as gs_start). Otherwise casts, calls, requests and timer
                           messages beyond this many waiting are refused (GS_OVERFLOW_REJECT: the
                           send returns GS_EAGAIN; a timer's message is dropped) or make room
                           (GS_OVERFLOW_DROP_OLDEST: the oldest waiting casts and timer messages
                           are dropped when the server next takes a message, and counted; memory
                           is then bounded by mailbox_max plus what arrives during one turn).
                           Stop requests and runtime messages are never refused. */
    int overflow;       /* GS_OVERFLOW_REJECT or GS_OVERFLOW_DROP_OLDEST */
    int stats;          /* non-zero: keep the handled count, the mailbox high-water mark and the
                           time spent in callbacks (two clock reads per scheduling turn) */
} gs_start_opts;

/* As gs_start, with options (NULL: as gs_start). GS_EINVAL for an unknown
 * overflow policy. */
int gs_start_with(gs_runtime *rt, const gs_server_ops *ops, const void *arg, const gs_start_opts *opts,
                  gs_pid *out);

/* A server's load, read in O(1) from any thread. */
typedef struct gs_server_info {
    size_t mailbox_len;   /* messages waiting (including those of the turn running now) */
    size_t mailbox_max;   /* its bound, 0 if unbounded */
    uint64_t refused;     /* sends refused with GS_EAGAIN (or timer messages dropped) */
    uint64_t dropped;     /* messages dropped by GS_OVERFLOW_DROP_OLDEST */
    uint64_t handled;     /* messages taken by the server      } only with */
    uint64_t mailbox_hwm; /* highest mailbox_len seen at a turn } gs_start_opts */
    uint64_t callback_ns; /* time spent in its turns            } .stats; else 0 */
} gs_server_info;

/* GS_OK, GS_ENOPROC, GS_EINVAL (NULL argument). */
int gs_server_info_get(gs_runtime *rt, gs_pid pid, gs_server_info *out);

/* Queues an asynchronous message for handle_cast and returns at once.
 * Messages from one sender to one server are handled in the order sent.
 * Returns GS_OK, GS_ENOPROC (no live server `to`), GS_EINVAL (rt NULL,
 * data NULL with len > 0, a runtime tag), GS_EMSGSIZE (len > GS_MSG_MAX),
 * GS_EAGAIN (a bounded mailbox is full, see gs_start_opts) or GS_ENOMEM. */
int gs_cast(gs_runtime *rt, gs_pid to, uint32_t tag, const void *data, size_t len);

/* Sends a request to handle_call and waits for the reply, at most
 * timeout_ms (or GS_INFINITY). On GS_OK the reply is copied into `reply`
 * (at most reply_cap bytes) and *reply_len (if not NULL) gets its full
 * length. Returns:
 *   GS_OK, GS_EMSGSIZE (the reply was larger than reply_cap: the first
 *   reply_cap bytes were copied), GS_ETIMEDOUT (a reply that comes later
 *   is dropped, never seen by a later call), GS_ENOPROC (no such server,
 *   or it stopped before replying: returned as soon as it stops),
 *   GS_EDEADLK (a server calling itself, or an init calling the server
 *   whose callback runs it: see init), GS_ENOREPLY, GS_ENOTSUP (see
 *   handle_call), GS_EINVAL (rt NULL, data NULL with len > 0, reply NULL
 *   with reply_cap > 0, a bad timeout, a runtime tag), GS_EAGAIN (the
 *   server's bounded mailbox is full, see gs_start_opts), GS_ENOMEM,
 *   GS_EKILLED (from a callback of a server that gs_kill is removing: the
 *   callback should return).
 * From an outside thread the caller spins briefly, then sleeps on a futex
 * with an absolute CLOCK_MONOTONIC deadline. From inside a callback the
 * calling server is suspended, not its worker: the callback's stack is set
 * aside and the worker runs other servers until the reply, the timeout (on
 * the runtime's timer wheel; kept even when GS_TIMERS_MAX timers hold
 * every record, then up to a few milliseconds late) or the callee's exit
 * resumes the callback where it left off, on whichever worker picks it
 * up. Meanwhile messages to the suspended server wait in its mailbox. A
 * cycle (A calls B while B calls A) ends by timeout, as in Erlang.
 *
 * Callback stacks: callbacks run on fiber stacks of 64 KiB. Keep large
 * buffers off the stack (a few KiB of locals are fine; deep recursion is
 * not). The first 16,384 stacks have a guard page (overflow faults); the
 * rest carry a canary checked at every switch (overflow aborts with a
 * message). A stack is held only while its server has a call in flight,
 * plus one spare per worker; memory is what the callbacks touched (a few
 * KiB each), address space 68 KiB per stack. Should no stack be had, the
 * call holds its worker instead (counted in gs_runtime_stats). The
 * floating-point control state (rounding mode, exception masks) is not
 * switched with the stack: a callback that changes it must restore it
 * before it calls and before it returns. */
int gs_call(gs_runtime *rt, gs_pid to, uint32_t tag, const void *data, size_t len,
            void *reply, size_t reply_cap, size_t *reply_len, int timeout_ms);

/* Answers a pending call, from any thread, exactly once. The payload is
 * copied straight into the caller's buffer. Returns GS_OK if the reply
 * reached a waiting caller, GS_ENOENT if there was none any more (already
 * answered, the caller timed out, or the server stopped; the reply is
 * dropped). Exception, so that `return gs_reply(...)` from handle_call is
 * safe: replying to the call being handled, from its own handle_call,
 * gives GS_OK even if the caller has given up meanwhile (a second reply
 * there still gives GS_ENOENT). Also GS_EINVAL (rt NULL, a `from` that no call ever produced,
 * data NULL with len > 0), GS_EMSGSIZE (len > GS_MSG_MAX). */
int gs_reply(gs_runtime *rt, gs_from from, const void *data, size_t len);

/* Stops a server: a stop request joins its mailbox, so what was queued
 * before it is handled first and what arrives after it is dropped (calls
 * among them fail with GS_ENOPROC). terminate runs on the server's worker
 * with `reason`. Waits until the server has terminated, at most timeout_ms.
 * Returns GS_OK once it has terminated, GS_ETIMEDOUT if that took longer
 * (the server still stops), GS_ENOPROC for a pid that is not a live
 * server, GS_EDEADLK from inside the server's own callbacks (there, return
 * GS_STOP) or from an init that its callback runs (see init), GS_EINVAL
 * (rt NULL, bad timeout), GS_ENOMEM. Stopping a server
 * twice concurrently: both return once it has terminated. */
int gs_stop(gs_runtime *rt, gs_pid pid, int reason, int timeout_ms);

/* From a callback: the reason the server exits with when a callback
 * returns GS_STOP (instead of GS_NORMAL), e.g. GS_SHUTDOWN. */
void gs_set_exit_reason(gs_ctx *ctx, int reason);

/* The running server's own pid / its runtime. ctx NULL gives GS_NOPID / NULL. */
gs_pid gs_self(const gs_ctx *ctx);
gs_runtime *gs_ctx_runtime(const gs_ctx *ctx);

/* ------------------------------------------------------------------ */
/* Asynchronous requests                                               */
/* ------------------------------------------------------------------ */

/* A request in flight. 0 is never a request. */
typedef uint64_t gs_request;

#define GS_TAG_REPLY 0xFFFF0004u         /* handle_info: a request's reply */
#define GS_TAG_REPLY_TIMEOUT 0xFFFF0005u /* handle_info: a request's deadline passed */

/* The head of a GS_TAG_REPLY / GS_TAG_REPLY_TIMEOUT payload; for a reply
 * with status GS_OK the reply bytes follow it:
 *   const gs_request_reply *r = msg->data;
 *   const void *bytes = (const char *)msg->data + sizeof *r;
 *   size_t nbytes = msg->len - sizeof *r; */
typedef struct gs_request_reply {
    gs_request req; /* what gs_send_request returned */
    int status;     /* GS_OK, or why there is no reply: GS_ETIMEDOUT, GS_ENOPROC,
                       GS_ENOREPLY, GS_ENOTSUP, GS_ENOMEM */
} gs_request_reply;

/* Sends a call request to `to` and returns at once with its id in *out;
 * handle_call sees an ordinary call (it may reply at once or defer). The
 * outcome - a reply, or a timeout when timeout_ms passes (GS_INFINITY:
 * never), never both - arrives:
 *   - from a callback: as a message to the calling server's handle_info,
 *     tag GS_TAG_REPLY (status GS_OK and the reply bytes, or the reason
 *     there is none) or GS_TAG_REPLY_TIMEOUT;
 *   - from an outside thread: through gs_wait_request.
 * Returns GS_OK, or as gs_call for bad arguments, GS_ENOPROC (no such
 * server), GS_EDEADLK (a server requesting from itself), GS_ENOMEM, or
 * GS_EAGAIN (the server's bounded mailbox is full, see gs_start_opts; or,
 * from a callback with a timeout, GS_TIMERS_MAX timers are held, so its
 * timeout could not be armed; either way nothing was sent). From a
 * callback with a timeout that runs out before the send is done (0, say),
 * a request to a server that is gone may be reported made (GS_OK): its
 * outcome, GS_TAG_REPLY_TIMEOUT, arrives all the same, and only one.
 * When the requesting server exits, its open requests end with it: their
 * slots and timeouts are freed then, and the callee's reply is dropped
 * (its gs_reply returns GS_ENOENT, as for a call that timed out). A
 * callback requesting from a server of another runtime counts there as an
 * outside thread: it collects the outcome with gs_wait_request, and its
 * exit does not end the request. */
int gs_send_request(gs_runtime *rt, gs_pid to, uint32_t tag, const void *data, size_t len, int timeout_ms,
                    gs_request *out);

/* From an outside thread: waits at most timeout_ms for the outcome of a
 * request it sent. Returns the outcome (GS_OK with the reply copied as by
 * gs_call, GS_EMSGSIZE, GS_ETIMEDOUT when the request's own deadline
 * passed, GS_ENOPROC, ...), after which the id is spent; or GS_EAGAIN if
 * timeout_ms passed first (the request stays pending: wait again);
 * GS_ENOENT for an id that is spent or unknown; GS_EINVAL for a request
 * sent from a callback (its outcome goes to handle_info). One thread at a
 * time may wait on a request. */
int gs_wait_request(gs_runtime *rt, gs_request req, void *reply, size_t reply_cap, size_t *reply_len,
                    int timeout_ms);

/* ------------------------------------------------------------------ */
/* Timers                                                              */
/* ------------------------------------------------------------------ */

/* A timer handle. 0 is never a timer. */
typedef uint64_t gs_timer;

/* Timer records a runtime holds at most (16,777,216; 128 bytes each). */
#define GS_TIMERS_MAX (1u << 24)

/* The tag of the idle-timeout message (see gs_set_idle_timeout). */
#define GS_TAG_TIMEOUT 0xFFFF0001u

/* Delivers a copy of (tag, data, len) to `to`'s handle_info after delay_ms
 * (0: as soon as possible), with sender GS_NOPID. Never early; late by at
 * most about 1/8 ms plus the OS's wake-up while the runtime keeps up.
 * Timers that come due in the same 1/8 ms may arrive in any order, but
 * timers one thread arms in order with the same delay arrive in order.
 * (Deadlines read on different threads within a microsecond or so of each
 * other may come out in either order, as may those of one server whose
 * callback resumed on another thread in between. A known gap: a few of a
 * thread's timers due 4 ms or more ahead may be overtaken by its next
 * ones when the timer thread takes them from the thread's outbox while
 * the thread sends it newer ones.) *out (may be NULL)
 * gets a handle for gs_cancel_timer. A timer whose target stops is
 * cancelled with it: never delivered, and its record freed then (even
 * with GS_TIMERS_MAX records in use). Any thread; a thread outside the runtime's workers
 * keeps up to 64 free timer records (128 bytes each) of the runtime it
 * last armed a timer on, handed back when it exits or arms on another
 * runtime. Returns GS_OK, GS_ENOPROC (`to` is not a live
 * server), GS_EINVAL (rt NULL, data NULL with len > 0, a runtime tag,
 * delay_ms negative or above GS_TIMEOUT_MAX_MS), GS_EMSGSIZE, GS_ENOMEM,
 * GS_EAGAIN (GS_TIMERS_MAX timer records in use already: pending timers,
 * cancelled ones not yet freed, and up to 64 free ones cached by
 * each thread that armed timers, so the limit may come a little early). */
int gs_send_after(gs_runtime *rt, gs_pid to, uint32_t tag, const void *data, size_t len, int delay_ms,
                  gs_timer *out);

/* As gs_send_after, to whichever server is registered as `name` when the
 * timer fires (erlang:send_after/3 with a registered name): the name is
 * not looked up now, and if no server holds it then, the message is
 * dropped. The timer belongs to no server, so no server's exit cancels
 * it. Returns GS_OK, GS_EINVAL (as gs_send_after, or name NULL, empty or
 * longer than GS_NAME_MAX), GS_EMSGSIZE, GS_ENOMEM, GS_EAGAIN. */
int gs_send_after_name(gs_runtime *rt, const char *name, uint32_t tag, const void *data, size_t len, int delay_ms,
                       gs_timer *out);

/* An interval timer (timer:send_interval): delivers a copy of (tag, data,
 * len) to `to`'s handle_info every interval_ms, the first after
 * interval_ms, with sender GS_NOPID, until cancelled or `to` stops. Each
 * tick is due one interval after the last tick's deadline, so ticks do
 * not drift; a tick is never early. If the runtime was held up for a
 * whole interval, the ticks missed are skipped, not sent in a burst.
 * gs_cancel_timer ends it (GS_OK while it runs) and drops its ticks still
 * queued: a server that cancels its own interval timer never handles a
 * tick of it afterwards (a cancel from another thread may meet a tick
 * already being handled). gs_read_timer gives the time to the next tick.
 * Each tick is a fresh copy, made by the timer thread: keep the payload
 * small (a pointer or a key), since copying a large one (megabytes) at
 * every tick holds up every other timer of the runtime for that long.
 * Any thread. Returns GS_OK, GS_ENOPROC (`to` is not a live server),
 * GS_EINVAL (rt NULL, data NULL with len > 0, a runtime tag, interval_ms
 * below 1 or above GS_TIMEOUT_MAX_MS), GS_EMSGSIZE, GS_ENOMEM, GS_EAGAIN
 * (as gs_send_after). */
int gs_send_interval(gs_runtime *rt, gs_pid to, uint32_t tag, const void *data, size_t len, int interval_ms,
                     gs_timer *out);

/* As gs_send_interval, to whichever server is registered as `name` at
 * each tick (timer:send_interval/3 with a registered name): a tick that
 * finds nobody holding the name is dropped, and the timer ticks on until
 * cancelled; no server's exit ends it. Returns as gs_send_interval, with
 * GS_EINVAL for a bad name (as gs_send_after_name) instead of
 * GS_ENOPROC. */
int gs_send_interval_name(gs_runtime *rt, const char *name, uint32_t tag, const void *data, size_t len,
                          int interval_ms, gs_timer *out);

/* Cancels a timer. Returns GS_OK if it was cancelled before firing (its
 * message will never be delivered, and its memory is freed soon, not at
 * its deadline), GS_ENOENT if it already fired, was
 * already cancelled, its server stopped, or it never existed; GS_EINVAL
 * for a NULL rt. Any thread. A timer that fires while it is being
 * cancelled has exactly one outcome: delivered and GS_ENOENT, or not
 * delivered and GS_OK. An interval timer (gs_send_interval) never fires
 * for good: GS_OK while it runs, and its ticks still queued are dropped. */
int gs_cancel_timer(gs_runtime *rt, gs_timer t);

/* How long until a timer fires (erlang:read_timer): *ms_left gets the
 * milliseconds left, rounded up (0: due, about to be delivered). Returns
 * GS_OK, GS_ENOENT if it already fired, was cancelled, its server stopped,
 * or it never existed; GS_EINVAL for a NULL rt or ms_left. Any thread. */
int gs_read_timer(gs_runtime *rt, gs_timer t, int *ms_left);

/* From a callback: from now on, whenever the server has received nothing
 * for ms milliseconds, handle_info gets a message with tag GS_TAG_TIMEOUT
 * (no payload), and again after every further ms of silence, until
 * gs_set_idle_timeout(ctx, GS_INFINITY) clears it. Silence counts from the
 * return of the callback that handled the last message (as in OTP), the
 * timeout's own handle_info and the init that set it included. ms must be
 * > 0 or GS_INFINITY (anything else is ignored). Costs no timer operation
 * per message received; setting the same value again is free. If the
 * timeout cannot be armed (GS_TIMERS_MAX timers held, or no memory), it
 * stays set, is logged once, and is armed again when the server next
 * handles a message. */
void gs_set_idle_timeout(gs_ctx *ctx, int ms);

/* ------------------------------------------------------------------ */
/* Monitors, links, kill                                              */
/* ------------------------------------------------------------------ */

/* A monitor reference. 0 is never a monitor. */
typedef uint64_t gs_ref;

#define GS_TAG_DOWN 0xFFFF0002u /* handle_info: payload gs_down */
#define GS_TAG_EXIT 0xFFFF0003u /* handle_info: payload gs_exit_signal */

typedef struct gs_down {
    gs_ref ref;  /* what gs_monitor returned */
    gs_pid pid;  /* the server that exited */
    int reason;  /* its exit reason; GS_ENOPROC if it was already gone */
} gs_down;

typedef struct gs_exit_signal {
    gs_pid pid; /* the linked server that exited */
    int reason; /* its exit reason */
} gs_exit_signal;

/* `watcher` will get one GS_TAG_DOWN message (msg->len == sizeof(gs_down))
 * when `target` exits. Monitoring a pid that is already dead is not an
 * error: DOWN comes at once with reason GS_ENOPROC. Returns GS_OK,
 * GS_ENOPROC (watcher is not a live server), GS_EINVAL (rt NULL, target
 * GS_NOPID), GS_ENOMEM. The monitor costs memory until DOWN is handled
 * or gs_demonitor. If the watcher exits first, its monitor is freed at the
 * latest when the target exits, and before that as the target gains new
 * monitors: each one the target takes in looks at two of its monitors
 * and frees those whose watcher is gone, so a target with L such monitors
 * is rid of them after at most 3L/4 new ones. Any thread. */
int gs_monitor(gs_runtime *rt, gs_pid watcher, gs_pid target, gs_ref *out);

/* Removes a monitor; a DOWN of it already queued is dropped and never
 * reaches handle_info. GS_OK, or GS_ENOENT if the monitor does not exist
 * (any more): DOWN already handled, already removed, never was. */
int gs_demonitor(gs_runtime *rt, gs_ref ref);

/* From a callback: links the running server with `other`, both ways. When
 * one of them exits with a reason other than GS_NORMAL, the other exits
 * with the same reason (its terminate runs), unless it traps exits: then
 * its handle_info gets GS_TAG_EXIT with a gs_exit_signal, for every reason,
 * GS_NORMAL included. Exit signals travel through the mailbox like other
 * messages. Returns GS_OK (also if already linked), GS_ENOPROC (other is
 * not a live server), GS_EINVAL (ctx NULL, linking to self), GS_ENOMEM. */
int gs_link(gs_ctx *ctx, gs_pid other);
/* Removes the link both ways. GS_OK (also if there was none), GS_EINVAL. */
int gs_unlink(gs_ctx *ctx, gs_pid other);
/* From a callback: on != 0 makes exit signals from links into messages. */
void gs_trap_exits(gs_ctx *ctx, int on);

/* Removes a server as soon as its current callback (if any) returns,
 * without running terminate and without handling its queued messages
 * (calls among them fail with GS_ENOPROC). In C a running callback cannot
 * be interrupted: "kill" means "never run another callback". To make it
 * return soon, a call it is suspended in (gs_call, gs_stop, ...) ends at
 * once with GS_EKILLED, and so does every call it makes afterwards (in
 * Erlang, kill ends a process blocked in gen_server:call too). That
 * includes a call made by its init; an init that gs_start runs inside
 * another server's callback is part of that callback too, so killing
 * that other server ends the init's calls as well. Monitors see reason
 * GS_KILLED, links get an exit signal with it. Does not wait. A server
 * already exiting on its own (its terminate running) is not killed, but
 * its calls are ended the same way. Not ended (known gaps): a call into
 * another runtime, and a call made by an init nested in the killed
 * server's init (gs_start from an init) other than its own. Returns
 * GS_OK, GS_ENOPROC (no such server, or exiting already), GS_EINVAL,
 * GS_EDEADLK (from the server's own callbacks: return a negative code
 * instead), GS_ENOMEM. */
int gs_kill(gs_runtime *rt, gs_pid pid);

/* ------------------------------------------------------------------ */
/* Names                                                               */
/* ------------------------------------------------------------------ */

#define GS_NAME_MAX 255 /* longest name, in bytes */

/* Gives `pid` a name (a server may have several). The name is released
 * when the server exits, before its monitors fire. Lookups take no lock
 * (an RCU hash table). Returns GS_OK, GS_EEXIST (name taken), GS_ENOPROC
 * (pid is not a live server), GS_EINVAL (rt or name NULL, name empty or
 * longer than GS_NAME_MAX), GS_ENOMEM. */
int gs_register(gs_runtime *rt, const char *name, gs_pid pid);
/* GS_OK, GS_ENOENT if the name is not registered, GS_EINVAL. */
int gs_unregister(gs_runtime *rt, const char *name);
/* GS_OK with *out set, GS_ENOENT if none, GS_EINVAL (out NULL, bad name). */
int gs_whereis(gs_runtime *rt, const char *name, gs_pid *out);

/* gs_cast / gs_call to a registered name: GS_ENOPROC if no such name,
 * otherwise exactly as gs_cast / gs_call. */
int gs_cast_name(gs_runtime *rt, const char *name, uint32_t tag, const void *data, size_t len);
int gs_call_name(gs_runtime *rt, const char *name, uint32_t tag, const void *data, size_t len, void *reply,
                 size_t reply_cap, size_t *reply_len, int timeout_ms);

/* ------------------------------------------------------------------ */
/* Logging                                                             */
/* ------------------------------------------------------------------ */

enum { GS_LOG_ERROR, GS_LOG_WARNING, GS_LOG_INFO, GS_LOG_DEBUG };

/* One complete line per call, without a trailing newline. Called from
 * any thread of the runtime (workers and callers), possibly concurrently:
 * the function must be thread-safe. */
typedef void (*gs_log_fn)(void *user, int level, const char *line);

/* Installs a logger for this runtime. Returns GS_OK, or GS_EINVAL for a
 * NULL rt. A NULL fn restores the default logger, which writes warnings
 * and errors to stderr and is silent when nothing is wrong; a custom
 * logger gets every level. What the runtime logs:
 *   GS_LOG_ERROR   crash reports: "crash report: server '<name>' <pid>
 *                  exited with reason <n> (<sentence>); last message tag
 *                  <tag>", and handle_call returning GS_OK without reply
 *   GS_LOG_WARNING a call to a server without handle_call, a callback
 *                  returning a value it may not return
 *   GS_LOG_INFO    runtime start and stop
 *   GS_LOG_DEBUG   messages dropped because no handler exists */
int gs_set_logger(gs_runtime *rt, gs_log_fn fn, void *user);

/* Formats a pid for logs: "<RT.IDX.GEN>" (runtime tag, slot, generation).
 * Writes at most cap bytes (NUL included); returns buf. */
char *gs_pid_format(gs_pid pid, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif

#include "genserver/supervisor.h"

#endif /* GENSERVER_H */
