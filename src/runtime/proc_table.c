/* proc_table.c - the process table: type-stable slots and generation-tagged
 * pids.
 *
 * Problem: a sender holds only a pid, and the server may stop (and its
 * slot be reused) at any moment, yet a send must never touch freed memory
 * nor reach a newer server in the same slot.
 *
 * Design: procs live in chunks of PROC_CHUNK_SIZE that are allocated on
 * demand and freed only with the runtime (type-stable memory), so a
 * pointer to a slot is always safe to dereference. Each proc has a control
 * word `ctl` = generation (32) | OPEN (bit 31) | STOPPABLE (bit 30) |
 * references (30 bits).
 *   - A sender does one fetch_add(+1) on ctl. If the generation matches its
 *     pid and OPEN is set, it holds a reference: the server cannot finish
 *     closing until the sender has pushed its message and dropped the
 *     reference with fetch_sub. Otherwise it undoes the increment and
 *     reports GS_ENOPROC.
 *   - Allocating a slot adds 1 << 32 (a new generation, still closed);
 *     opening sets OPEN | STOPPABLE.
 *   - Closing happens in two steps. proc_close_begin clears OPEN: from then
 *     on only stop requests get in (so that a gs_stop racing with the
 *     server's own exit still waits for the end, as the first one does).
 *     proc_close_end clears STOPPABLE and waits for the references to
 *     drain (each is a sender in the middle of a push: a few instructions,
 *     unless it was preempted, hence the bounded spin and then yields).
 *     After that no message can arrive and the mailbox can be emptied.
 * Increments by stale senders on a closed slot are undone at once and are
 * done with fetch_add/fetch_sub, so they never corrupt the generation.
 * Rejected: RCU read-side sections around sends (every outside thread
 * would need registering with liburcu) and freeing procs with call_rcu
 * (a grace period per stop is far slower than reusing the slot).
 */
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "futex.h"
#include "internal.h"

proc *proc_table_at(gs_runtime *rt, uint32_t idx)
{
    if (idx >= GS_MAX_SERVERS)
        return NULL;
    /* acquire: pairs with the release store that published the chunk. */
    proc *chunk = atomic_load_explicit(&rt->proc_chunks[idx >> PROC_CHUNK_SHIFT], memory_order_acquire);
    return chunk ? &chunk[idx & (PROC_CHUNK_SIZE - 1)] : NULL;
}

static _Atomic uint32_t *proc_free_link(void *ctx, uint32_t idx)
{
    return &proc_table_at(ctx, idx)->free_link;
}

uint32_t proc_table_high_water(gs_runtime *rt)
{
    uint32_t n = atomic_load_explicit(&rt->proc_fresh, memory_order_acquire);
    return n > GS_MAX_SERVERS ? GS_MAX_SERVERS : n;
}

static proc *chunk_new(void)
{
    proc *chunk = aligned_alloc(64, sizeof(proc) * PROC_CHUNK_SIZE);
    if (chunk == NULL)
        return NULL;
    memset(chunk, 0, sizeof(proc) * PROC_CHUNK_SIZE);
    for (uint32_t i = 0; i < PROC_CHUNK_SIZE; i++) {
        atomic_init(&chunk[i].ctl, 0);
        atomic_init(&chunk[i].free_link, 0);
    }
    return chunk;
}

/* Makes sure the chunk holding idx exists. */
static int ensure_chunk(gs_runtime *rt, uint32_t idx)
{
    _Atomic(proc *) *slot = &rt->proc_chunks[idx >> PROC_CHUNK_SHIFT];
    if (atomic_load_explicit(slot, memory_order_acquire) != NULL)
        return GS_OK;
    pthread_mutex_lock(&rt->grow_lock);
    int rc = GS_OK;
    if (atomic_load_explicit(slot, memory_order_relaxed) == NULL) {
        proc *chunk = chunk_new();
        if (chunk == NULL)
            rc = GS_ENOMEM;
        else
            atomic_store_explicit(slot, chunk, memory_order_release);
    }
    pthread_mutex_unlock(&rt->grow_lock);
    return rc;
}

int proc_table_alloc(gs_runtime *rt, proc **out)
{
    uint32_t idx;
    if (!idxstack_pop(&rt->proc_free, &idx, proc_free_link, rt)) {
        idx = atomic_fetch_add_explicit(&rt->proc_fresh, 1, memory_order_relaxed);
        if (idx >= GS_MAX_SERVERS) {
            atomic_fetch_sub_explicit(&rt->proc_fresh, 1, memory_order_relaxed);
            return GS_ELIMIT;
        }
        int rc = ensure_chunk(rt, idx);
        if (rc != GS_OK)
            return rc; /* that one index is lost; later ones retry the chunk */
    }
    proc *p = proc_table_at(rt, idx);
    /* A new generation, still closed: nobody can send to it before
     * proc_open. relaxed: published by proc_open's release. */
    uint64_t w = atomic_fetch_add_explicit(&p->ctl, UINT64_C(1) << 32, memory_order_relaxed);
    uint32_t gen = (uint32_t)(w >> 32) + 1;
    p->pid = pid_make(gen, rt->tag, idx);
    p->rt = rt;
    *out = p;
    return GS_OK;
}

void proc_open(proc *p)
{
    /* release: the proc's initialisation (mailbox, ops, state) happens
     * before any sender's acquire increment that sees OPEN. */
    atomic_fetch_or_explicit(&p->ctl, CTL_OPEN | CTL_STOPPABLE, memory_order_release);
}

void proc_table_free(gs_runtime *rt, proc *p)
{
    idxstack_push(&rt->proc_free, pid_index(p->pid), proc_free_link, rt);
}

int proc_acquire(gs_runtime *rt, gs_pid pid, uint64_t need, proc **out)
{
    if (pid_tag(pid) != rt->tag)
        return GS_ENOPROC;
    proc *p = proc_table_at(rt, pid_index(pid));
    if (p == NULL)
        return GS_ENOPROC;
    /* acquire: pairs with the release in proc_open, so the mailbox and the
     * proc's fields initialised before opening are visible. */
    uint64_t w = atomic_fetch_add_explicit(&p->ctl, 1, memory_order_acquire);
    if ((uint32_t)(w >> 32) != pid_gen(pid) || (w & need) == 0) {
        atomic_fetch_sub_explicit(&p->ctl, 1, memory_order_relaxed);
        return GS_ENOPROC;
    }
    *out = p;
    return GS_OK;
}

void proc_release(proc *p)
{
    /* release: the message pushed under this reference happens before the
     * closer's acquire load that sees the count drop, so its drain sees it. */
    atomic_fetch_sub_explicit(&p->ctl, 1, memory_order_release);
}

void proc_close_begin(proc *p)
{
    /* Senders that increment after this see OPEN clear and back off (stop
     * requests still get in). */
    atomic_fetch_and_explicit(&p->ctl, ~CTL_OPEN, memory_order_acq_rel);
}

void proc_close_end(proc *p)
{
    atomic_fetch_and_explicit(&p->ctl, ~(CTL_OPEN | CTL_STOPPABLE), memory_order_acq_rel);
    unsigned spins = 0;
    /* acquire: see proc_release. */
    while ((atomic_load_explicit(&p->ctl, memory_order_acquire) & CTL_REFS_MASK) != 0) {
        if (++spins < 128) {
            cpu_relax();
        } else if (spins < 256) {
            sched_yield(); /* a sender was preempted mid-push */
        } else {
            struct timespec ts = {0, 50000};
            nanosleep(&ts, NULL);
        }
    }
}

void proc_table_destroy(gs_runtime *rt)
{
    for (uint32_t i = 0; i < PROC_CHUNKS; i++) {
        proc *chunk = atomic_load_explicit(&rt->proc_chunks[i], memory_order_relaxed);
        free(chunk);
    }
}
