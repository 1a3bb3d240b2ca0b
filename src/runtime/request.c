/* request.c - asynchronous requests: gs_send_request, gs_wait_request.
 *
 * A request is a call whose caller does not wait on the spot. It uses the
 * same reply slot and ticket as gs_call, so every answer path (gs_reply
 * from any thread, deferred replies, the callee's exit, the deadline) has
 * one winner through the slot's CAS, and a request gets exactly one
 * outcome: a reply or a timeout, never both.
 *   - From a callback, the outcome comes to the requesting server as an
 *     info message (GS_TAG_REPLY or GS_TAG_REPLY_TIMEOUT) naming the
 *     request. The deadline is a timer-wheel function timer; the message
 *     that reports a lack of memory is allocated up front, so an outcome
 *     is always delivered. Nobody waits on the slot: the completer
 *     releases it.
 *   - From an outside thread, the completer keeps the reply (a heap copy)
 *     in the request, and gs_wait_request collects it, sleeping on the
 *     slot's futex as gs_call does.
 * The request record belongs to the slot once the ticket is out, and a
 * completer frees it: from a callback with a deadline, the timer may
 * complete the request (and free it) before gs_send_request has returned,
 * even before the message went out (timeout 0). So there the requester
 * holds a second reference until it is done, and a send that fails after
 * the timer was armed takes the request back only if it cancels the timer
 * first; if the timer got there first, the request has its outcome (a
 * timeout) and gs_send_request reports it as sent.
 */
#include <stdlib.h>
#include <string.h>

#include "futex.h"
#include "internal.h"
#include "alloc.h"

enum { ASYNC_SERVER, ASYNC_THREAD };

typedef struct async_req {
    _Atomic int refs; /* the slot's, and the requester's while it arms a deadline */
    int mode;
    gs_pid to;        /* ASYNC_SERVER: the requesting server */
    gs_request id;
    gs_timer timer;   /* ASYNC_SERVER: the deadline */
    msg *fallback;    /* ASYNC_SERVER: outcome to deliver if memory runs out */
    void *heap;       /* ASYNC_THREAD: the reply, once completed */
    size_t len;
    int status;
} async_req;

#define REQ_SEQ_BITS 34
#define REQ_SEQ_MASK ((UINT64_C(1) << REQ_SEQ_BITS) - 1)
#define REQ_SLOT_BITS 22

static gs_request request_id(gs_runtime *rt, ticket t)
{
    return (gs_request)rt->tag << 56 | (gs_request)t.slot << REQ_SEQ_BITS | (t.seq & REQ_SEQ_MASK);
}

static void request_timed_out(gs_runtime *rt, uint64_t slot, uint64_t seq)
{
    (void)reply_slot_complete(rt, (ticket){(uint32_t)slot, seq}, GS_ETIMEDOUT, NULL, 0);
}

static void async_free(async_req *a)
{
    msg_free(a->fallback);
    free(a->heap);
    free(a);
}

void request_discard(async_req *a)
{
    async_free(a);
}

/* acq_rel: whoever frees sees every write the other holder made. */
static void async_unref(async_req *a)
{
    if (atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) == 1)
        async_free(a);
}

int gs_send_request(gs_runtime *rt, gs_pid to, uint32_t tag, const void *data, size_t len, int timeout_ms,
                    gs_request *out)
{
    int rc = msg_check_payload(rt, tag, data, len);
    if (rc != GS_OK)
        return rc;
    if (out == NULL)
        return GS_EINVAL;
    uint64_t deadline;
    proc *self;
    if ((rc = timeout_to_deadline(timeout_ms, &deadline)) != GS_OK || (rc = msg_check_target(rt, to, false, &self)) != GS_OK)
        return rc;
    async_req *a = gs_calloc(1, sizeof *a);
    msg *m = msg_new(rt, MSG_CALL, tag, data, len);
    if (a == NULL || m == NULL) {
        free(a);
        msg_free(m);
        return GS_ENOMEM;
    }
    atomic_init(&a->refs, 1);
    a->mode = self != NULL ? ASYNC_SERVER : ASYNC_THREAD;
    if (self != NULL) {
        a->to = self->pid;
        gs_request_reply oom = {.req = 0, .status = GS_ENOMEM};
        if ((a->fallback = msg_new(rt, MSG_INFO, GS_TAG_REPLY, &oom, sizeof oom)) == NULL) {
            async_free(a);
            msg_free(m);
            return GS_ENOMEM;
        }
        a->fallback->sender = GS_NOPID;
    }
    ticket t;
    if ((rc = reply_slot_take(rt, NULL, 0, deadline, NULL, NULL, a, a->mode == ASYNC_THREAD, &t)) != GS_OK) {
        async_free(a);
        msg_free(m);
        return rc;
    }
    if (self != NULL && (rc = server_track_request(self, t)) != GS_OK) {
        reply_slot_abandon(rt, t);
        async_free(a);
        msg_free(m);
        return rc;
    }
    gs_request id = a->id = request_id(rt, t);
    if (a->fallback != NULL)
        ((gs_request_reply *)a->fallback->data)->req = id;
    bool timed = a->mode == ASYNC_SERVER && deadline != DEADLINE_NEVER;
    if (timed) {
        /* The requester's reference: the timer may complete and free the
         * request as soon as it is armed (relaxed: nobody else has it). */
        atomic_store_explicit(&a->refs, 2, memory_order_relaxed);
        if ((rc = timers_arm_fn(rt, deadline, request_timed_out, t.slot, t.seq, &a->timer)) != GS_OK) {
            reply_slot_abandon(rt, t);
            async_free(a);
            msg_free(m);
            return rc;
        }
    }
    m->ticket = t;
    rc = msg_send(rt, to, m);
    if (rc != GS_OK && timed && timers_cancel(rt, a->timer) != GS_OK) {
        /* The deadline passed first: the timer completed the request with
         * a timeout, whose outcome is on its way. So it was made. */
        rc = GS_OK;
    } else if (rc != GS_OK) {
        /* Nobody else knows the ticket (the message never arrived, the
         * timer is cancelled): take the request back. */
        reply_slot_abandon(rt, t);
        async_free(a); /* both references are ours now */
        return rc;
    }
    if (timed)
        async_unref(a);
    *out = id;
    return GS_OK;
}

/* Called by reply_slot_complete once it won the slot (WRITING). */
int request_complete(gs_runtime *rt, reply_slot *s, ticket t, int status, const void *data, size_t len,
                     int rc)
{
    async_req *a = s->async;
    if (a->mode == ASYNC_THREAD) {
        if (status == GS_OK && len > 0 && (a->heap = gs_malloc(len)) == NULL)
            status = GS_ENOMEM;
        if (status == GS_OK && len > 0)
            memcpy(a->heap, data, len);
        a->status = status;
        a->len = status == GS_OK ? len : 0;
        /* seq_cst: publishes the result; Dekker with the waiter's sleep. */
        atomic_store_explicit(&s->state, (t.seq << 2) | 3u /* DONE */, memory_order_seq_cst);
        reply_slot_ring(s);
        return rc;
    }
    /* ASYNC_SERVER: deliver the outcome as an info message. */
    size_t body = status == GS_OK ? len : 0;
    msg *m = msg_alloc(rt, MSG_INFO, status == GS_ETIMEDOUT ? GS_TAG_REPLY_TIMEOUT : GS_TAG_REPLY,
                       sizeof(gs_request_reply) + body);
    if (m == NULL) {
        m = a->fallback;
        a->fallback = NULL;
    } else {
        gs_request_reply head = {.req = a->id, .status = status};
        memcpy(m->data, &head, sizeof head);
        if (body > 0)
            memcpy(m->data + sizeof head, data, body);
    }
    m->sender = GS_NOPID;
    gs_pid to = a->to;
    gs_timer timer = a->timer;
    s->async = NULL;
    reply_slot_release(rt, s, t.slot); /* nobody waits on it */
    if (timer != 0)
        (void)timers_cancel(rt, timer); /* fails harmlessly if it is the timer completing */
    async_unref(a);
    (void)msg_send(rt, to, m); /* a requester that is gone needs no answer */
    return rc;
}

static int wait_request(gs_runtime *rt, gs_request req, void *reply, size_t reply_cap, size_t *reply_len,
                        uint64_t wait_until);

int gs_wait_request(gs_runtime *rt, gs_request req, void *reply, size_t reply_cap, size_t *reply_len,
                    int timeout_ms)
{
    if (rt == NULL || (reply == NULL && reply_cap > 0))
        return GS_EINVAL;
    uint64_t wait_until;
    int rc = timeout_to_deadline(timeout_ms, &wait_until);
    if (rc != GS_OK)
        return rc;
    /* Counted while it waits, so that a gs_runtime_stop under way does not
     * free the runtime under it (runtime_wait_enter). */
    runtime_wait_enter(rt);
    rc = wait_request(rt, req, reply, reply_cap, reply_len, wait_until);
    runtime_wait_leave(rt);
    return rc;
}

static int wait_request(gs_runtime *rt, gs_request req, void *reply, size_t reply_cap, size_t *reply_len,
                        uint64_t wait_until)
{
    if ((req >> 56) != rt->tag)
        return GS_ENOENT;
    uint32_t idx = (uint32_t)(req >> REQ_SEQ_BITS) & ((1u << REQ_SLOT_BITS) - 1);
    reply_slot *s = reply_slot_of(rt, idx);
    if (s == NULL)
        return GS_ENOENT;
    uint64_t w = atomic_load_explicit(&s->state, memory_order_acquire);
    uint64_t seq = w >> 2;
    if ((seq & REQ_SEQ_MASK) != (req & REQ_SEQ_MASK) || (w & 3) == 0 /* IDLE */)
        return GS_ENOENT;
    const uint64_t waiting = seq << 2 | 1u, done = seq << 2 | 3u;
    /* Whose request is it? A server's is freed by its completer at any
     * moment, so only the slot's flag may be read, not the request. A
     * seqlock read: the state (acquire, above), the flag, an acquire
     * fence, the state again: if the flag came from a later use of the
     * slot, the fence pairs with reply_slot_take's release fence and the
     * second read sees this use's end (IDLE, or a later ticket). An
     * outside thread's request is freed only by its waiter, which is us
     * (one waiter at a time), so once the flag says so it stays put. */
    bool thread_request = atomic_load_explicit(&s->thread_request, SEQ_FIELD_LOAD);
    SEQ_FENCE(memory_order_acquire);
    uint64_t again = atomic_load_explicit(&s->state, memory_order_relaxed);
    if ((again >> 2) != seq || (again & 3) == 0 /* IDLE */)
        return GS_ENOENT; /* over, or the slot went on to another call (WRITING is this one's reply coming) */
    if (!thread_request)
        return GS_EINVAL; /* a server's request (or a call's ticket): its outcome goes to handle_info */
    async_req *a = s->async;
    if (a == NULL || a->id != req)
        return GS_ENOENT;
    uint64_t deadline = s->deadline_ns;
    for (;;) {
        uint64_t st = atomic_load_explicit(&s->state, memory_order_acquire);
        if (st == done)
            break;
        uint64_t now = now_ns();
        if (st == waiting && now >= deadline) {
            uint64_t expected = waiting;
            if (atomic_compare_exchange_strong_explicit(&s->state, &expected, seq << 2, memory_order_acquire,
                                                        memory_order_acquire)) {
                s->async = NULL;
                reply_slot_release(rt, s, idx);
                async_free(a);
                return GS_ETIMEDOUT; /* the request's own deadline: it is over */
            }
            continue;
        }
        if (st == waiting && now >= wait_until)
            return GS_EAGAIN; /* not yet: the request stays pending */
        reply_slot_sleep(s, st, st == waiting ? (deadline < wait_until ? deadline : wait_until) : DEADLINE_NEVER);
    }
    int status = a->status;
    if (status == GS_OK) {
        size_t n = a->len < reply_cap ? a->len : reply_cap;
        if (n > 0)
            memcpy(reply, a->heap, n);
        if (a->len > reply_cap)
            status = GS_EMSGSIZE;
    }
    if (reply_len != NULL)
        *reply_len = a->len;
    s->async = NULL;
    reply_slot_release(rt, s, idx);
    async_free(a);
    return status;
}
