/* messaging.c - the public send operations: cast, call, reply, stop.
 *
 * Every send allocates one message (header + copied payload), takes a
 * reference on the target's slot (proc_acquire: fails with GS_ENOPROC for
 * anything but a live server), pushes, drops the reference, and schedules
 * the server if the push found its mailbox idle. The message is built
 * before the reference is taken so that the reference is held for a few
 * instructions only (a server that is closing waits for it).
 */
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "deadline_clock.h"
#include "futex.h"
#include "internal.h"
#include "msg_cache.h"

/* A message with room for len payload bytes, not filled in. */
msg *msg_alloc(gs_runtime *rt, uint8_t kind, uint32_t tag, size_t len)
{
    msg *m = gs_malloc(sizeof(msg) + len);
    if (m == NULL)
        return NULL;
    proc *cur = current_proc();
    msg_header_init(m, kind, tag, (cur != NULL && proc_rt(cur) == rt) ? cur->pid : GS_NOPID, len, NULL);
    return m;
}

void msg_free(msg *m)
{
    if (m != NULL && m->home != NULL)
        msg_cache_give(m->home, m);
    else
        free(m);
}

msg *msg_new(gs_runtime *rt, uint8_t kind, uint32_t tag, const void *data, size_t len)
{
    msg *m = msg_alloc(rt, kind, tag, len);
    if (m == NULL)
        return NULL;
    if (len > 0)
        memcpy(m->data, data, len);
    return m;
}

/* Pushes m to p, on which the caller holds a reference (ctl word w),
 * drops the reference and schedules p if its mailbox was idle. A full
 * bounded mailbox with GS_OVERFLOW_REJECT refuses m (freed): GS_EAGAIN. */
static int deliver(gs_runtime *rt, proc *p, uint64_t w, msg *m)
{
    /* relaxed: a counter; the owner subtracts what each turn consumed. */
    uint64_t pushed = atomic_fetch_add_explicit(&p->enqueued, 1, memory_order_relaxed);
    if (w & CTL_OPTS) {
        proc_opts *o = p->extra->opts; /* stable while we hold the reference */
        uint32_t waiting = mailbox_waiting((uint32_t)pushed, atomic_load_explicit(&p->dequeued, memory_order_relaxed));
        if (o->mailbox_max != 0 && o->overflow == GS_OVERFLOW_REJECT && waiting >= o->mailbox_max &&
            msg_bounded(m)) {
            atomic_fetch_sub_explicit(&p->enqueued, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&o->refused, 1, memory_order_relaxed);
            proc_release(p);
            msg_free(m);
            return GS_EAGAIN;
        }
    }
    bool was_idle = mailbox_push(&p->mb, &m->node);
    proc_release(p);
    /* Only we can schedule an idle server, and only a running server can
     * close, so p stays valid until it is on a run queue. */
    if (was_idle)
        scheduler_make_runnable(rt, p);
    return GS_OK;
}

int msg_send(gs_runtime *rt, gs_pid to, msg *m)
{
    proc *p;
    uint64_t w;
    /* Stop requests also reach a server that is already terminating. */
    int rc = proc_acquire_word(rt, to, m->kind == MSG_STOP ? CTL_STOPPABLE : CTL_OPEN, &p, &w);
    if (rc != GS_OK) {
        msg_free(m);
        return rc;
    }
    return deliver(rt, p, w, m);
}

int timeout_to_deadline(int timeout_ms, uint64_t *deadline_ns)
{
    if (timeout_ms == GS_INFINITY) {
        *deadline_ns = DEADLINE_NEVER;
        return GS_OK;
    }
    if (timeout_ms < 0 || timeout_ms > GS_TIMEOUT_MAX_MS)
        return GS_EINVAL;
    *deadline_ns = deadline_clock_ns() + (uint64_t)timeout_ms * 1000000u; /* never early */
    return GS_OK;
}

/* Checks shared by every sender: runtime, payload, tag. */
int msg_check_payload(gs_runtime *rt, uint32_t tag, const void *data, size_t len)
{
    if (rt == NULL || (data == NULL && len > 0) || tag >= GS_TAG_RUNTIME_BASE)
        return GS_EINVAL;
    if (len > GS_MSG_MAX)
        return GS_EMSGSIZE;
    return GS_OK;
}

/* The target of a call, a stop or a request: GS_ENOPROC for GS_NOPID,
 * GS_EDEADLK for the calling server itself and, when the caller `waits`
 * for the target (a call, a stop), for a server whose callback runs the
 * calling init (internal.h, init_frame): it cannot answer before the
 * init returns. *self: the calling server, or NULL for an outside
 * thread. */
int msg_check_target(gs_runtime *rt, gs_pid to, bool waits, proc **self)
{
    proc *cur = current_proc(); /* of any runtime */
    *self = cur != NULL && proc_rt(cur) == rt ? cur : NULL;
    if (to == GS_NOPID)
        return GS_ENOPROC;
    if (*self != NULL && (*self)->pid == to)
        return GS_EDEADLK;
    /* Init frames exist only while an init runs, which is then current:
     * an outside thread need not look. */
    if (waits && cur != NULL && init_frames_wait_on(rt, to))
        return GS_EDEADLK;
    return GS_OK;
}

/* The server whose callback this thread runs, if it belongs to rt. */
proc *msg_current_server(gs_runtime *rt)
{
    proc *p = current_proc();
    return p != NULL && proc_rt(p) == rt ? p : NULL;
}

int gs_cast(gs_runtime *rt, gs_pid to, uint32_t tag, const void *data, size_t len)
{
    int rc = msg_check_payload(rt, tag, data, len);
    if (rc != GS_OK)
        return rc;
    if (to == GS_NOPID)
        return GS_ENOPROC;
    msg *m = msg_new(rt, MSG_CAST, tag, data, len);
    if (m == NULL)
        return GS_ENOMEM;
    return msg_send(rt, to, m);
}

/* The fiber the calling callback runs on, if it may suspend there. */
static fiber *suspendable_fiber(gs_runtime *rt)
{
    worker *w = current_worker();
    if (w == NULL || w->rt != rt || w->running == NULL)
        return NULL;
    return proc_extra_get(w->running->proc) != NULL ? w->running : NULL;
}

/* The timeout of a call from a callback, about to suspend: it goes on the
 * wheel only if the reply is slow to come (deferred, see scheduler.c; the
 * timer thread then completes the call with GS_ETIMEDOUT, which resumes
 * it), at once if the deadline is near. If the wheel has no record to
 * spare (GS_TIMERS_MAX timers held), the deferred list keeps it anyway and
 * a promotion completes the call once the deadline has passed: no call
 * waits without its timeout. False only if the list cannot grow either. */
static bool keep_timeout(gs_runtime *rt, ticket t, uint64_t deadline)
{
    worker *w = current_worker();
    return scheduler_defer_timeout(w, t, deadline, false) == GS_OK ||
           reply_timeout_arm(rt, t, deadline) == GS_OK ||
           scheduler_defer_timeout(w, t, deadline, true) == GS_OK;
}

/* Sends m (which carries a fresh ticket for a slot holding buf/cap) and
 * waits for its completion until deadline: a callback on a fiber
 * suspends (its worker goes on with other servers; the reply, the timeout
 * from the timer wheel or the callee's exit resumes it); an outside
 * thread sleeps on the reply slot's futex. */
static int send_and_wait(gs_runtime *rt, gs_pid to, msg *m, void *buf, size_t cap, uint64_t deadline,
                         size_t *len_out)
{
    /* A killed server's callback is to return: its calls fail at once
     * (gs_kill ended the one it was suspended in). relaxed: the flag is
     * set by gs_kill and only read here, a hint the next look repeats. */
    proc *cur = current_proc(); /* restored after a suspension, whichever runtime it belongs to */
    proc *caller = cur != NULL && proc_rt(cur) == rt ? cur : NULL; /* another runtime's: not ours to kill */
    if (caller != NULL && (atomic_load_explicit(&caller->ctl, memory_order_relaxed) & CTL_KILLED) != 0) {
        msg_free(m);
        return GS_EKILLED;
    }
    fiber *f = suspendable_fiber(rt);
    proc *owner = f != NULL ? f->proc : NULL;
    worker *w = current_worker();
    /* A thread outside the runtime is counted while it waits, from before
     * its request goes out, so that gs_runtime_stop does not free the
     * runtime under it (runtime_wait_enter). */
    bool outside = owner == NULL && (w == NULL || w->rt != rt);
    if (owner != NULL)
        atomic_store_explicit(&owner->extra->resume_latch, 2, memory_order_relaxed);
    if (outside)
        runtime_wait_enter(rt);
    ticket t;
    int rc = reply_slot_take(rt, buf, cap, deadline, owner, caller, NULL, false, &t);
    if (rc != GS_OK) {
        msg_free(m);
    } else {
        m->ticket = t;
        if ((rc = msg_send(rt, to, m)) != GS_OK)
            reply_slot_abandon(rt, t);
    }
    if (rc != GS_OK || owner == NULL) {
        if (rc == GS_OK && !outside) {
            /* A worker that waits must not sit on runnable servers (the
             * callee may be among them). */
            atomic_fetch_add_explicit(&w->blocked, 1, memory_order_relaxed);
            scheduler_before_block(rt);
        }
        if (rc == GS_OK && caller != NULL) {
            /* A callback that blocks its thread (an init run by gs_start
             * on an outside thread, or with no fiber to be had): a kill
             * whose slot scan came before our WAITING is caught here, as
             * run_turn catches it for a suspended one (Dekker: WAITING,
             * a full fence, our look; gs_kill's RMW, its scan). A rare
             * path, already about to block: the fence costs nothing. */
            full_fence();
            if (atomic_load_explicit(&caller->ctl, memory_order_seq_cst) & CTL_KILLED)
                (void)reply_slot_complete(rt, t, GS_EKILLED, NULL, 0);
        }
        if (rc == GS_OK)
            rc = reply_slot_wait(rt, t, deadline, len_out);
        if (outside)
            runtime_wait_leave(rt);
        return rc;
    }
    if (deadline != DEADLINE_NEVER && !keep_timeout(rt, t, deadline))
        reply_timed_out(rt, t.slot, t.seq); /* nowhere to keep it: the call times out at once */
    owner->extra->wait_slot = t.slot;
    owner->extra->wait_seq = t.seq;
    owner->extra->wait_caller = caller;
    owner->extra->fiber = f;
    /* An init suspending inside owner's callback takes its list of
     * waiting servers along: the worker's next turn is not inside them.
     * Only an init has such a list (owner's own callback has none), so
     * the common case costs a compare. */
    init_frame *frames = cur != owner ? current_init_frames() : NULL;
    if (frames != NULL)
        set_current_init_frames(NULL);
    f->status = FIBER_SUSPENDED;
    atomic_fetch_add_explicit(&current_worker()->suspended, 1, memory_order_relaxed);
    fiber_leave(fiber_current_home(), f);
    /* Resumed, perhaps on another worker: the reply slot is DONE. A timer
     * armed for it meanwhile is cancelled by the collect (or, if it has
     * gone off already, found the ticket spent and did nothing). */
    set_current_proc(cur); /* the server whose callback calls (maybe an init inside owner's, of any runtime) */
    if (frames != NULL)
        set_current_init_frames(frames); /* a worker's own list is empty between turns */
    return reply_slot_collect(rt, t, len_out);
}

int gs_call(gs_runtime *rt, gs_pid to, uint32_t tag, const void *data, size_t len, void *reply,
            size_t reply_cap, size_t *reply_len, int timeout_ms)
{
    int rc = msg_check_payload(rt, tag, data, len);
    if (rc != GS_OK)
        return rc;
    if (reply == NULL && reply_cap > 0)
        return GS_EINVAL;
    uint64_t deadline;
    proc *self;
    if ((rc = timeout_to_deadline(timeout_ms, &deadline)) != GS_OK || (rc = msg_check_target(rt, to, true, &self)) != GS_OK)
        return rc;
    msg *m = msg_new(rt, MSG_CALL, tag, data, len);
    if (m == NULL)
        return GS_ENOMEM;
    size_t got = 0;
    rc = send_and_wait(rt, to, m, reply, reply_cap, deadline, &got);
    if (reply_len != NULL && (rc == GS_OK || rc == GS_EMSGSIZE))
        *reply_len = got;
    return rc;
}

int gs_reply(gs_runtime *rt, gs_from from, const void *data, size_t len)
{
    if (rt == NULL || (data == NULL && len > 0))
        return GS_EINVAL;
    if (len > GS_MSG_MAX)
        return GS_EMSGSIZE;
    ticket t;
    int rc = reply_ticket_from(rt, from, &t);
    if (rc != GS_OK)
        return rc;
    proc *self = msg_current_server(rt);
    bool current = self != NULL && self->current_slot == t.slot && self->current_seq == t.seq;
    if (current && self->replied)
        return GS_ENOENT; /* a second reply to the call being handled */
    rc = reply_slot_complete(rt, t, GS_OK, data, len);
    if (current) {
        self->replied = true;
        /* The usual `return gs_reply(...)` must not crash a server whose
         * caller merely gave up: the reply is dropped, and that is fine. */
        if (rc == GS_ENOENT)
            rc = GS_OK;
    }
    return rc;
}

int gs_stop(gs_runtime *rt, gs_pid pid, int reason, int timeout_ms)
{
    if (rt == NULL)
        return GS_EINVAL;
    uint64_t deadline;
    proc *self;
    int rc = timeout_to_deadline(timeout_ms, &deadline);
    if (rc != GS_OK || (rc = msg_check_target(rt, pid, true, &self)) != GS_OK)
        return rc;
    msg *m = msg_new(rt, MSG_STOP, 0, NULL, 0);
    if (m == NULL)
        return GS_ENOMEM;
    m->reason = reason;
    return send_and_wait(rt, pid, m, NULL, 0, deadline, NULL);
}

int gs_kill(gs_runtime *rt, gs_pid pid)
{
    if (rt == NULL)
        return GS_EINVAL;
    if (pid == GS_NOPID)
        return GS_ENOPROC;
    proc *self = msg_current_server(rt);
    if (self != NULL && self->pid == pid)
        return GS_EDEADLK;
    msg *m = msg_new(rt, MSG_KILL, 0, NULL, 0);
    if (m == NULL)
        return GS_ENOMEM;
    proc *p;
    uint64_t w;
    /* STOPPABLE, not OPEN: a server already exiting (in its terminate) is
     * not killed, but a call it is suspended in is ended all the same. */
    int rc = proc_acquire_word(rt, pid, CTL_STOPPABLE, &p, &w);
    if (rc != GS_OK) {
        msg_free(m);
        return rc;
    }
    /* The flag stops the server before its next callback, whatever is
     * queued, and makes the calls its callback makes fail at once
     * (send_and_wait); the message wakes it if it is idle. The flag and
     * the look at OPEN are one RMW, and so is the exit's close, whose
     * replaced value decides the exit (proc_dispose): if the close came
     * first we report GS_ENOPROC and the exit keeps its own reason (the
     * flag then only ends the calls its terminate makes); if we came
     * first, it skips terminate and reports GS_KILLED. Not once STOPPABLE
     * is clear: the exit's last step (proc_close_end) clears KILLED with
     * it, and a flag set after that would stay for the slot's next
     * server. seq_cst on success: the first half of a Dekker pair with a
     * worker whose server has just suspended (scheduler.c, run_turn);
     * relaxed on failure: the value is only looked at again. */
    uint64_t cur = atomic_load_explicit(&p->ctl, memory_order_relaxed);
    while ((cur & CTL_STOPPABLE) != 0 &&
           !atomic_compare_exchange_weak_explicit(&p->ctl, &cur, cur | CTL_KILLED, memory_order_seq_cst,
                                                  memory_order_relaxed))
        ;
    /* A callback suspended in a call would return only when the call
     * ends, which may be never (its callee may be waiting for this very
     * server's end, as a supervisor stopping a child that calls it): end
     * it now, with GS_EKILLED. */
    if ((cur & CTL_STOPPABLE) != 0)
        reply_slot_interrupt(rt, p, GS_EKILLED);
    if ((cur & CTL_OPEN) == 0) {
        proc_release(p);
        msg_free(m);
        return GS_ENOPROC; /* exiting already, with its own reason */
    }
    return deliver(rt, p, w, m);
}

int gs_server_info_get(gs_runtime *rt, gs_pid pid, gs_server_info *out)
{
    if (rt == NULL || out == NULL)
        return GS_EINVAL;
    proc *p;
    uint64_t w;
    int rc = proc_acquire_word(rt, pid, CTL_OPEN, &p, &w);
    if (rc != GS_OK)
        return rc;
    memset(out, 0, sizeof *out);
    out->mailbox_len = proc_mailbox_len(p);
    if (w & CTL_OPTS) {
        proc_opts *o = p->extra->opts;
        out->mailbox_max = o->mailbox_max;
        out->refused = atomic_load_explicit(&o->refused, memory_order_relaxed);
        out->dropped = atomic_load_explicit(&o->dropped, memory_order_relaxed);
        out->handled = atomic_load_explicit(&o->handled, memory_order_relaxed);
        out->mailbox_hwm = atomic_load_explicit(&o->hwm, memory_order_relaxed);
        out->callback_ns = atomic_load_explicit(&o->callback_ns, memory_order_relaxed);
    }
    proc_release(p);
    return GS_OK;
}
