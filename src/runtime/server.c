/* server.c - a server's life: start (init on the caller's thread), running
 * its mailbox on a worker, and exit (terminate, then close the slot, fail
 * what is still queued and free everything).
 *
 * A server runs at most SERVER_BATCH messages per turn, then goes to the
 * back of its worker's ring, so one busy server cannot starve the others
 * on that worker. Exit order, chosen so that every party learns the truth
 * as early as possible and nothing is freed under a sender:
 *   crash report (if the reason is negative)
 *   close the slot to all but stop requests: new sends fail with
 *     GS_ENOPROC from here on
 *   terminate(reason)
 *   close it to stop requests too, and let senders in the middle of a
 *     push finish
 *   fail queued calls (GS_ENOPROC), deferred unanswered calls (GS_ENOPROC)
 *   free state and messages; complete the gs_stop waiters (GS_OK)
 *   return the slot to the free list; live count - 1
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "futex.h"
#include "internal.h"
#include "alloc.h"

#define SERVER_BATCH 64u

_Thread_local proc *tl_proc __attribute__((tls_model("initial-exec")));

__attribute__((noinline)) proc *current_proc(void)
{
    return tl_proc;
}

__attribute__((noinline)) void set_current_proc(proc *p)
{
    tl_proc = p;
}

static _Thread_local init_frame *tl_init_frames __attribute__((tls_model("initial-exec")));

__attribute__((noinline)) init_frame *current_init_frames(void)
{
    return tl_init_frames;
}

__attribute__((noinline)) void set_current_init_frames(init_frame *f)
{
    tl_init_frames = f;
}

bool init_frames_wait_on(gs_runtime *rt, gs_pid pid)
{
    for (const init_frame *f = current_init_frames(); f != NULL; f = f->prev)
        if (proc_rt(f->outer) == rt && (pid == GS_NOPID || f->outer->pid == pid))
            return true;
    return false;
}

static inline gs_ctx *ctx_of(proc *p)
{
    return (gs_ctx *)p;
}

static const char *server_name(const proc *p)
{
    return p->ops->name != NULL ? p->ops->name : "(unnamed)";
}

gs_pid gs_self(const gs_ctx *ctx)
{
    return ctx != NULL ? ((const proc *)ctx)->pid : GS_NOPID;
}

gs_runtime *gs_ctx_runtime(const gs_ctx *ctx)
{
    return ctx != NULL ? proc_rt((const proc *)ctx) : NULL;
}

/* Appends t to *list (growing it); false if memory ran out. */
static bool tickets_add(pending_calls **list, ticket t)
{
    pending_calls *l = *list;
    if (l == NULL || l->count == l->cap) {
        uint32_t cap = l == NULL ? 4 : l->cap * 2;
        pending_calls *grown = gs_realloc(l, sizeof(*l) + cap * sizeof(ticket));
        if (grown == NULL)
            return false;
        if (l == NULL)
            grown->count = 0;
        grown->cap = cap;
        *list = l = grown;
    }
    l->items[l->count++] = t;
    return true;
}

/* Completes every ticket of *list with status and frees the list. */
static void tickets_complete_all(gs_runtime *rt, pending_calls **list, int status)
{
    pending_calls *l = *list;
    if (l == NULL)
        return;
    for (uint32_t i = 0; i < l->count; i++)
        (void)reply_slot_complete(rt, l->items[i], status, NULL, 0);
    free(l);
    *list = NULL;
}

/* Drops answered tickets from a list before it grows, so a server that
 * defers many replies (or sends many requests) keeps only the open ones. */
static void tickets_prune(gs_runtime *rt, pending_calls *l)
{
    if (l == NULL || l->count < l->cap || l->cap < 64)
        return;
    uint32_t kept = 0;
    for (uint32_t i = 0; i < l->count; i++)
        if (reply_ticket_waiting(rt, l->items[i]))
            l->items[kept++] = l->items[i];
    l->count = kept;
}

static void msg_free_node(mbox_node *n)
{
    msg_free((msg *)n); /* the node is the first member of msg */
}

static void remember_unanswered(proc *p, ticket t)
{
    proc_extra *x = proc_extra_get(p);
    if (x != NULL)
        tickets_prune(proc_rt(p), x->deferred);
    if (x == NULL || !tickets_add(&x->deferred, t)) {
        /* Out of memory: fail the call now rather than leave it hanging. */
        (void)reply_slot_complete(proc_rt(p), t, GS_ENOMEM, NULL, 0);
    }
}

int server_track_request(proc *self, ticket t)
{
    proc_extra *x = proc_extra_get(self);
    if (x == NULL)
        return GS_ENOMEM;
    tickets_prune(proc_rt(self), x->requests);
    return tickets_add(&x->requests, t) ? GS_OK : GS_ENOMEM;
}

/* A gs_stop caller waits until the server is gone. */
static void add_stop_waiter(proc *p, ticket t)
{
    if (t.slot == UINT32_MAX)
        return;
    proc_extra *x = proc_extra_get(p);
    if (x == NULL || !tickets_add(&x->stop_waiters, t))
        (void)reply_slot_complete(proc_rt(p), t, GS_OK, NULL, 0); /* early, but never lost */
}

static void apply_return(proc *p, int rc, const char *callback);

/* The idle-timeout timer came due: if the server really was silent for
 * idle_ms, tell handle_info and start a new period; otherwise re-arm for
 * the rest of the period. */
void idle_arm(proc *p, uint64_t due_ns)
{
    proc_extra *x = p->extra;
    int rc = timers_arm_idle(p, due_ns, &x->idle_timer);
    if (rc == GS_OK) {
        x->idle_arm_failed = false;
        return;
    }
    x->idle_timer = 0; /* still set (idle_ms): note_activity tries again */
    if (!x->idle_arm_failed) {
        char pidbuf[48];
        log_write(proc_rt(p), GS_LOG_ERROR,
                  "server '%s' %s: idle timeout of %d ms not armed (%s); tried again at its next message",
                  server_name(p), gs_pid_format(p->pid, pidbuf, sizeof pidbuf), x->idle_ms, gs_strerror(rc));
        x->idle_arm_failed = true;
    }
}

/* The idle check came: the timeout if the silence lasted idle_ms, else it
 * is moved to the remaining time. Silence counts from a callback's
 * return (as OTP counts a gen_server timeout), this handle_info's too. */
static void on_idle_check(proc *p, const msg *m)
{
    proc_extra *x = p->extra;
    uint64_t seq;
    memcpy(&seq, m->data, sizeof seq);
    if (x == NULL || x->idle_ms == 0 || seq != x->idle_seq)
        return; /* cleared or re-armed since */
    x->idle_timer = 0;
    uint64_t now = now_ns();
    uint64_t due = x->last_activity_ns + (uint64_t)x->idle_ms * 1000000u;
    if (now >= due) {
        if (p->ops->handle_info != NULL) {
            gs_msg gm = {.tag = GS_TAG_TIMEOUT, .data = NULL, .len = 0, .sender = GS_NOPID};
            apply_return(p, p->ops->handle_info(ctx_of(p), p->state, &gm), "handle_info");
            now = now_ns(); /* its return */
        }
        if (p->exiting || x->idle_ms == 0)
            return; /* stopping, or cleared by handle_info */
        x->last_activity_ns = now;
        if (x->idle_timer != 0)
            return; /* set anew by handle_info: armed from the call, moved when it comes early */
        due = now + (uint64_t)x->idle_ms * 1000000u;
    }
    idle_arm(p, due);
}

/* What a callback's return value means for its server. */
static void apply_return(proc *p, int rc, const char *callback)
{
    if (rc == GS_OK)
        return;
    if (rc == GS_STOP) {
        p->exiting = true;
        p->exit_reason = (p->extra != NULL && p->extra->stop_reason_set) ? p->extra->stop_reason : GS_NORMAL;
        return;
    }
    if (rc > 0) {
        char pidbuf[48];
        log_write(proc_rt(p), GS_LOG_WARNING, "server '%s' %s: %s returned %d, which it may not return",
                  server_name(p), gs_pid_format(p->pid, pidbuf, sizeof pidbuf), callback, rc);
        rc = GS_EBADRETURN;
    }
    p->exiting = true;
    p->exit_reason = rc;
}

static void handle_call(proc *p, msg *m, const gs_msg *gm)
{
    gs_runtime *rt = proc_rt(p);
    if (p->ops->handle_call == NULL) {
        char pidbuf[48];
        log_write(rt, GS_LOG_WARNING, "server '%s' %s has no handle_call; call with tag %" PRIu32 " refused",
                  server_name(p), gs_pid_format(p->pid, pidbuf, sizeof pidbuf), m->tag);
        (void)reply_slot_complete(rt, m->ticket, GS_ENOTSUP, NULL, 0);
        return;
    }
    proc_set_current_call(p, m->ticket);
    p->replied = false;
    int rc = p->ops->handle_call(ctx_of(p), p->state, gm, reply_from_ticket(rt, m->ticket));
    proc_set_current_call(p, TICKET_NONE);
    if (rc == GS_NOREPLY) {
        if (!p->replied)
            remember_unanswered(p, m->ticket);
        return;
    }
    if (rc == GS_OK) {
        if (!p->replied && reply_slot_complete(rt, m->ticket, GS_ENOREPLY, NULL, 0) == GS_OK) {
            char pidbuf[48];
            log_write(rt, GS_LOG_ERROR,
                      "server '%s' %s: handle_call returned GS_OK without replying to the call with "
                      "tag %" PRIu32 "; the caller got GS_ENOREPLY",
                      server_name(p), gs_pid_format(p->pid, pidbuf, sizeof pidbuf), m->tag);
        }
        return;
    }
    /* Stopping or crashing without a reply: the caller learns GS_ENOPROC
     * once the server has terminated. */
    if (!p->replied)
        remember_unanswered(p, m->ticket);
    apply_return(p, rc, "handle_call");
}

/* Monitor and link requests: the same whether the server runs or exits. */
static void bookkeeping(proc *p, const msg *m)
{
    switch (m->kind) {
    case MSG_MONITOR: monitors_on_monitor(p, m); break;
    case MSG_DEMONITOR: monitors_on_demonitor(p, m); break;
    case MSG_LINK: links_on_link(p, m); break;
    case MSG_UNLINK: links_on_unlink(p, m); break;
    default: break;
    }
}

/* Hands m to the server's callback, or to the runtime's bookkeeping.
 * Returns whether the server received something: a message that reached
 * (or was meant for) a callback, as opposed to bookkeeping that ran none
 * (monitors, links, an ignored exit signal, a DOWN of a monitor removed
 * since, a kill's wake-up, an idle check): only the former ends an idle
 * timeout's silence (as in OTP, being monitored does not). */
static bool dispatch(proc *p, msg *m)
{
    const gs_server_ops *ops = p->ops;
    gs_msg gm = {.tag = m->tag, .data = m->len ? m->data : NULL, .len = m->len, .sender = m->sender};
    if ((m->kind == MSG_INFO || m->kind == MSG_TICK) && m->ticket.slot != TICKET_NONE.slot)
        gm.timer = timers_handle(proc_rt(p), m->ticket); /* sent by a timer (fire, fire_tick) */
    p->last_tag = m->tag;
    switch (m->kind) {
    case MSG_CAST:
        if (ops->handle_cast != NULL)
            apply_return(p, ops->handle_cast(ctx_of(p), p->state, &gm), "handle_cast");
        else
            log_write(proc_rt(p), GS_LOG_DEBUG, "server '%s': cast with tag %" PRIu32 " dropped (no handle_cast)",
                      server_name(p), m->tag);
        break;
    case MSG_INFO:
    case MSG_TICK:
        if (ops->handle_info != NULL)
            apply_return(p, ops->handle_info(ctx_of(p), p->state, &gm), "handle_info");
        break;
    case MSG_CALL:
        handle_call(p, m, &gm);
        break;
    case MSG_STOP:
        p->exiting = true;
        p->exit_reason = m->reason;
        add_stop_waiter(p, m->ticket);
        break;
    case MSG_IDLE:
        on_idle_check(p, m);
        return false;
    case MSG_MONITOR:
    case MSG_DEMONITOR:
    case MSG_LINK:
    case MSG_UNLINK:
        bookkeeping(p, m);
        return false;
    case MSG_DOWN:
        if (!monitors_on_down(p, m))
            return false;
        if (ops->handle_info != NULL)
            apply_return(p, ops->handle_info(ctx_of(p), p->state, &gm), "handle_info");
        break;
    case MSG_EXIT:
        if (!links_on_exit(p, m))
            return false;
        if (ops->handle_info != NULL)
            apply_return(p, ops->handle_info(ctx_of(p), p->state, &gm), "handle_info");
        break;
    case MSG_KILL:
        return false; /* the flag in ctl does the work */
    }
    return true;
}

/* What a message that will never reach a callback still means: calls
 * fail, stop requests wait for the end, and monitor and link bookkeeping
 * counts (a monitor or link that arrived in time is notified of this
 * exit like the others). */
static void settle_message(proc *p, msg *m)
{
    switch (m->kind) {
    case MSG_CALL:
        (void)reply_slot_complete(proc_rt(p), m->ticket, GS_ENOPROC, NULL, 0);
        break;
    case MSG_STOP:
        add_stop_waiter(p, m->ticket);
        break;
    case MSG_MONITOR:
    case MSG_DEMONITOR:
    case MSG_LINK:
    case MSG_UNLINK:
        bookkeeping(p, m);
        break;
    case MSG_DOWN:
        monitors_drop_down(proc_rt(p), m);
        break;
    default:
        break;
    }
}

/* Empties the closed mailbox. */
static void drain_mailbox(proc *p)
{
    mbox_node *node, *retired;
    while ((node = mailbox_pop(&p->mb, &retired)) != NULL) {
        if (retired != NULL)
            msg_free_node(retired);
        settle_message(p, (msg *)node);
    }
    if (retired != NULL)
        msg_free_node(retired);
    mbox_node *tail = mailbox_tail_node(&p->mb);
    if (tail != NULL)
        msg_free_node(tail);
}

/* Ends a server: see the top of the file. Must not touch p afterwards. */
static void exit_log(proc *p, bool killed, int reason);

/* Ends p: terminate (if run_terminate), names, slot, queue, timers, links,
 * monitors, waiters. log_exit: a server that ran (not a refused init)
 * says how it went, by what the close decided. */
static void proc_dispose(proc *p, bool run_terminate, int reason, bool log_exit)
{
    gs_runtime *rt = proc_rt(p);
    /* A gs_kill that got in before the slot closed wins over the exit
     * under way: terminate is skipped and the exit is reported as
     * GS_KILLED, so that links and monitors see what the server went
     * through (a crash racing a kill used to skip terminate yet report
     * the crash: stress_monitors caught it). "Before" is decided by the
     * close's own RMW, whose old value we look at: gs_kill sets KILLED in
     * one RMW with its look at OPEN, so it reports GS_OK exactly when it
     * came first. A kill after the close (reported GS_ENOPROC) still sets
     * the flag, to end the calls terminate makes, but a separate load
     * here would have taken it for a kill. */
    bool killed = (proc_close_begin(p) & CTL_KILLED) != 0;
    if (log_exit)
        exit_log(p, killed, reason);
    if (killed) {
        reason = GS_KILLED; /* an init refusing after the kill too: it was killed first */
        run_terminate = false;
    }
    if (run_terminate && p->ops->terminate != NULL) {
        proc *saved = current_proc();
        set_current_proc(p);
        p->ops->terminate(ctx_of(p), p->state, reason);
        set_current_proc(saved);
    }
    /* Names go before the slot closes to stop requests: whoever sees the
     * pid dead (GS_ENOPROC, DOWN, EXIT) can register its name again. A
     * gs_register that got in before the slot closed still holds its
     * reference: wait for it, so that its name is seen and released. */
    proc_wait_senders(p);
    registry_release(rt, p);
    proc_close_end(p);
    drain_mailbox(p);
    timers_purge(rt, p);
    links_fire_all(p, reason);
    monitors_fire_all(p, reason);
    proc_extra *x = p->extra;
    if (x != NULL) {
        tickets_complete_all(rt, &x->deferred, GS_ENOPROC);
        /* Its open requests: nobody is left to get their outcomes, so the
         * slots and deadline timers go now, not at the deadline. */
        tickets_complete_all(rt, &x->requests, GS_ENOPROC);
    }
    free(p->state);
    p->state = NULL;
    if (x != NULL) {
        tickets_complete_all(rt, &x->stop_waiters, GS_OK);
        free(x->opts);
        free(x->links);
        free(x);
        p->extra = NULL;
    }
    proc_table_free(rt, p);
    /* The last access to rt on behalf of this server (gs_runtime_stop
     * joins the workers, and waits for gs_start callers to see live drop,
     * before freeing). While a runtime stop is in progress, wake it. */
    atomic_fetch_sub_explicit(&rt->live, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&rt->stopping, memory_order_seq_cst))
        futex_wake(&rt->live, 1);
}

/* The exit's log line: a kill (decided by the close, see proc_dispose),
 * an exit signal from a killed link, or a crash report. */
static void exit_log(proc *p, bool killed, int reason)
{
    char pidbuf[48];
    if (killed) {
        log_write(proc_rt(p), GS_LOG_INFO, "server '%s' %s killed: terminate skipped", server_name(p),
                  gs_pid_format(p->pid, pidbuf, sizeof pidbuf));
    } else if (reason == GS_KILLED) { /* an exit signal through a link: terminate runs */
        log_write(proc_rt(p), GS_LOG_INFO, "server '%s' %s exits: a linked server was killed", server_name(p),
                  gs_pid_format(p->pid, pidbuf, sizeof pidbuf));
    } else if (reason < 0) {
        log_write(proc_rt(p), GS_LOG_ERROR,
                  "crash report: server '%s' %s exited with reason %d (%s); last message tag %" PRIu32,
                  server_name(p), gs_pid_format(p->pid, pidbuf, sizeof pidbuf), reason, gs_strerror(reason),
                  p->last_tag);
    }
}

static void server_exit(proc *p)
{
    proc_dispose(p, true, p->exit_reason, true);
}

void gs_set_exit_reason(gs_ctx *ctx, int reason)
{
    proc *p = (proc *)ctx;
    proc_extra *x = p != NULL ? proc_extra_get(p) : NULL;
    if (x == NULL)
        return;
    x->stop_reason_set = true;
    x->stop_reason = reason;
}

/* Counts a turn's messages for gs_runtime_stats_get: one atomic per turn. */
static void count_messages(unsigned n)
{
    worker *w = current_worker();
    if (w != NULL && n > 0) /* only this thread writes it: no read-modify-write needed */
        atomic_store_explicit(&w->messages, atomic_load_explicit(&w->messages, memory_order_relaxed) + n,
                              memory_order_relaxed);
}

/* End-of-turn bookkeeping: the mailbox count loses what the turn took
 * (one atomic per turn, not per message), the statistics gain it. */
static void end_turn(proc *p, unsigned taken, uint64_t started_ns)
{
    count_messages(taken);
    if (taken > 0) /* owner-only: a plain store, no read-modify-write */
        atomic_store_explicit(&p->dequeued, atomic_load_explicit(&p->dequeued, memory_order_relaxed) + taken,
                              memory_order_relaxed);
    proc_opts *o = p->extra != NULL ? p->extra->opts : NULL;
    if (o != NULL && o->stats) {
        atomic_fetch_add_explicit(&o->handled, taken, memory_order_relaxed);
        atomic_fetch_add_explicit(&o->callback_ns, now_ns() - started_ns, memory_order_relaxed);
    }
}

/* GS_OVERFLOW_DROP_OLDEST: whether m (taken as number `taken` in this
 * turn) is beyond the bound and must be dropped unhandled. */
static bool drop_oldest(proc *p, const msg *m, unsigned taken)
{
    proc_opts *o = p->extra != NULL ? p->extra->opts : NULL;
    if (o == NULL || o->mailbox_max == 0 || o->overflow != GS_OVERFLOW_DROP_OLDEST || m->kind == MSG_CALL ||
        !msg_bounded(m))
        return false; /* a call is never dropped (its caller waits), nor what the bound exempts */
    int64_t waiting = (int64_t)proc_mailbox_len(p) - (int64_t)taken;
    if (waiting <= (int64_t)o->mailbox_max)
        return false;
    atomic_fetch_add_explicit(&o->dropped, 1, memory_order_relaxed);
    return true;
}

/* With an idle timeout: the messages of this turn so far end the silence
 * now (when their handling is over, as OTP counts a gen_server timeout
 * from the callback's return). One clock read for all of them: at the
 * end of the turn, or before an idle check taken in the same turn. */
static void note_activity(proc *p)
{
    proc_extra *x = p->extra;
    if (x == NULL || x->idle_ms == 0)
        return;
    x->last_activity_ns = now_ns();
    if (x->idle_timer == 0) /* its arming failed (idle_arm): again */
        idle_arm(p, x->last_activity_ns + (uint64_t)x->idle_ms * 1000000u);
}

bool server_run(proc *p)
{
    proc *saved = current_proc();
    set_current_proc(p);
    bool again = false, active = false;
    uint64_t started_ns = 0;
    proc_opts *o = p->extra != NULL ? p->extra->opts : NULL;
    if (o != NULL && o->stats) {
        started_ns = now_ns();
        uint64_t len = proc_mailbox_len(p);
        if (len > atomic_load_explicit(&o->hwm, memory_order_relaxed))
            atomic_store_explicit(&o->hwm, len, memory_order_relaxed); /* only the owner writes it */
    }
    unsigned n;
    for (n = 0;; n++) {
        if (n == SERVER_BATCH) {
            if (active)
                note_activity(p);
            again = true;
            break;
        }
        uint64_t flags = atomic_load_explicit(&p->ctl, memory_order_relaxed) & (CTL_KILLED | CTL_SHUTDOWN);
        if (flags != 0) {
            /* gs_kill: no further callback; an allocation-free runtime
             * stop: terminate, skipping the queue. The queue is settled
             * by the exit's drain. */
            p->exiting = true;
            p->exit_reason = (flags & CTL_KILLED) ? GS_KILLED : GS_SHUTDOWN;
            count_messages(n);
            server_exit(p);
            set_current_proc(saved);
            return false;
        }
        mbox_node *retired;
        mbox_node *node = mailbox_pop(&p->mb, &retired);
        if (retired != NULL)
            msg_free_node(retired);
        if (node == NULL) {
            /* Idle if really empty; otherwise a push is half-way: again.
             * The count and the activity go first: after a successful
             * try_idle, p is not ours any more. */
            if (active)
                note_activity(p);
            end_turn(p, n, started_ns);
            n = 0;
            again = !mailbox_try_idle(&p->mb);
            break;
        }
        msg *m = (msg *)node;
        if (drop_oldest(p, m, n))
            continue;
        /* A tick of an interval timer cancelled since it was sent: as if
         * it never came (it counts as no activity either). */
        if (m->kind == MSG_TICK && !timers_tick_current(proc_rt(p), m))
            continue;
        if (m->kind == MSG_IDLE && active) {
            note_activity(p); /* the messages before the check count */
            active = false;
        }
        bool received = dispatch(p, m); /* may suspend in a call and resume on another worker */
        if (p->exiting) {
            count_messages(n + 1);
            server_exit(p);
            set_current_proc(saved);
            return false;
        }
        /* Looked at after the callback, so that one that set the timeout
         * counts as activity too (noted once, at the end of the turn);
         * bookkeeping does not count (dispatch). */
        if (received && p->extra != NULL && p->extra->idle_ms != 0)
            active = true;
    }
    if (n > 0)
        end_turn(p, n, started_ns);
    set_current_proc(saved);
    return again;
}

int gs_start(gs_runtime *rt, const gs_server_ops *ops, const void *arg, gs_pid *out)
{
    return gs_start_with(rt, ops, arg, NULL, out);
}

/* The options' record, in the server's extra (before it opens). */
static int attach_opts(proc *p, const gs_start_opts *opts)
{
    proc_extra *x = proc_extra_get(p);
    proc_opts *o = x != NULL ? gs_calloc(1, sizeof *o) : NULL;
    if (o == NULL)
        return GS_ENOMEM;
    o->mailbox_max = opts->mailbox_max;
    o->overflow = opts->overflow;
    o->stats = opts->stats != 0;
    x->opts = o;
    return GS_OK;
}

static int start_server(gs_runtime *rt, const gs_server_ops *ops, const void *arg, const gs_start_opts *opts,
                        proc *link_parent, gs_pid *out);

int gs_start_with(gs_runtime *rt, const gs_server_ops *ops, const void *arg, const gs_start_opts *opts,
                  gs_pid *out)
{
    return start_server(rt, ops, arg, opts, NULL, out);
}

int server_start_linked(gs_ctx *parent, const gs_server_ops *ops, const void *arg, gs_pid *out)
{
    proc *pp = (proc *)parent;
    if (pp == NULL)
        return GS_EINVAL;
    return start_server(proc_rt(pp), ops, arg, NULL, pp, out);
}

/* gs_start_with; link_parent: see server_start_linked. */
static int start_server(gs_runtime *rt, const gs_server_ops *ops, const void *arg, const gs_start_opts *opts,
                        proc *link_parent, gs_pid *out)
{
    if (rt == NULL || ops == NULL || ops->state_size > GS_MSG_MAX)
        return GS_EINVAL;
    if (opts != NULL && opts->overflow != GS_OVERFLOW_REJECT && opts->overflow != GS_OVERFLOW_DROP_OLDEST)
        return GS_EINVAL;
    /* live first, then stopping: gs_runtime_stop sets stopping first and
     * then waits for live to reach 0, so a start it did not refuse is one
     * it waits for (seq_cst on both sides). */
    atomic_fetch_add_explicit(&rt->live, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&rt->stopping, memory_order_seq_cst)) {
        atomic_fetch_sub_explicit(&rt->live, 1, memory_order_seq_cst);
        futex_wake(&rt->live, 1);
        return GS_ESHUTDOWN;
    }
    void *state = NULL;
    if (ops->state_size > 0 && (state = gs_calloc(1, ops->state_size)) == NULL) {
        atomic_fetch_sub_explicit(&rt->live, 1, memory_order_seq_cst);
        return GS_ENOMEM;
    }
    proc *p;
    int rc = proc_table_alloc(rt, &p);
    if (rc != GS_OK) {
        free(state);
        atomic_fetch_sub_explicit(&rt->live, 1, memory_order_seq_cst);
        return rc;
    }
    p->ops = ops;
    p->state = state;
    p->last_tag = 0;
    p->exiting = false;
    p->replied = false;
    p->trap_exits = false; /* slots are reused: not the last server's choice */
    p->exit_reason = GS_NORMAL;
    proc_set_current_call(p, TICKET_NONE);
    p->extra = NULL;
    atomic_store_explicit(&p->enqueued, 0, memory_order_relaxed);
    atomic_store_explicit(&p->dequeued, 0, memory_order_relaxed);
    if (opts != NULL && (rc = attach_opts(p, opts)) != GS_OK) {
        free(p->extra);
        p->extra = NULL;
        free(state);
        proc_table_free(rt, p);
        atomic_fetch_sub_explicit(&rt->live, 1, memory_order_seq_cst);
        return rc;
    }
    mailbox_init(&p->mb); /* starts "scheduled": nothing runs it during init */
    proc_open(p, opts != NULL ? CTL_OPTS : 0);
    atomic_fetch_add_explicit(&rt->opened, 1, memory_order_seq_cst);
    gs_pid pid = p->pid;

    proc *saved = current_proc();
    /* Inside a callback (or an init): that server waits for this init, and
     * the init's calls and stops must not wait on it (internal.h). */
    init_frame frame = {saved, NULL};
    if (saved != NULL) {
        frame.prev = current_init_frames();
        set_current_init_frames(&frame);
    }
    set_current_proc(p);
    rc = ops->init != NULL ? ops->init(ctx_of(p), state, arg) : GS_OK;
    set_current_proc(saved);
    if (saved != NULL)
        set_current_init_frames(frame.prev);
    if (rc == GS_OK)
        note_activity(p); /* an idle timeout set in init counts from its return */

    if (rc == GS_OK && link_parent != NULL && (rc = links_join_new(link_parent, p)) != GS_OK) {
        /* Started, but it cannot be linked (out of memory): it goes at
         * once, terminate included, and the parent learns why. */
        proc_dispose(p, true, rc, false);
        return rc;
    }
    if (rc == GS_OK) {
        if (out != NULL)
            *out = pid;
        /* Messages sent during init are waiting: schedule if any. */
        if (!mailbox_try_idle(&p->mb))
            scheduler_make_runnable(rt, p);
        return GS_OK;
    }
    int exit_reason = rc; /* what links and monitors made in init see */
    if (rc == GS_STOP) {
        /* Refused quietly (OTP's ignore): a normal exit for them, so
         * that a server init linked to does not crash. */
        rc = GS_ECANCELED;
        exit_reason = GS_NORMAL;
    } else if (rc > 0) {
        char pidbuf[48];
        log_write(rt, GS_LOG_WARNING, "server '%s' %s: init returned %d, which it may not return",
                  server_name(p), gs_pid_format(pid, pidbuf, sizeof pidbuf), rc);
        rc = exit_reason = GS_EBADRETURN;
    }
    proc_dispose(p, false, exit_reason, false); /* refused: no terminate */
    return rc;
}
