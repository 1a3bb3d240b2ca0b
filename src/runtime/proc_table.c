/* proc_table.c - the process table: type-stable slots and generation-tagged
 * pids.
 *
 * Problem: a sender holds only a pid, and the server may stop (and its
 * slot be reused) at any moment, yet a send must never touch freed memory
 * nor reach a newer server in the same slot.
 *
 * Design: procs live in a type-stable pool (pool.c): chunks allocated on
 * demand and freed only with the runtime, so a pointer to a slot is always
 * safe to dereference. Each proc has a control
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
 * Beside each slot, a mark (slot_mark in internal.h) repeats the
 * generation and OPEN, plus whether a timer was armed for the server, on
 * lines written only when a server opens or closes: gs_send_after and
 * gs_cancel_timer ask whether a server lives many times per message it
 * receives, and reading ctl, which every sender and the mailbox head's
 * pushes keep writing, cost the arming thread a cross-core miss (W7:
 * 9.2 -> 10.1 M/s without the check). Marks come in chunks of the
 * slots' chunk size, made when a slot in a new chunk is first taken.
 * Rejected: RCU read-side sections around sends (every outside thread
 * would need registering with liburcu) and freeing procs with call_rcu
 * (a grace period per stop is far slower than reusing the slot).
 */
#include <sched.h>
#include <stdlib.h>

#include "alloc.h"
#include "futex.h"
#include "internal.h"

_Static_assert(sizeof(proc) % 64 == 0, "procs are whole cache lines");

#define MARK_CHUNKS (GS_MAX_SERVERS >> PROC_CHUNK_SHIFT)

int proc_table_init(gs_runtime *rt)
{
    rt->slot_marks = gs_calloc(MARK_CHUNKS, sizeof *rt->slot_marks);
    if (rt->slot_marks == NULL)
        return GS_ENOMEM;
    int rc = pool_init(&rt->procs, sizeof(proc), offsetof(proc, free_link), PROC_CHUNK_SHIFT, GS_MAX_SERVERS);
    if (rc != GS_OK) {
        free(rt->slot_marks);
        rt->slot_marks = NULL;
        return rc;
    }
    pthread_mutex_init(&rt->marks_lock, NULL);
    return GS_OK;
}

/* Makes the chunk of marks that holds idx, if it is not there yet. */
static int marks_ensure(gs_runtime *rt, uint32_t idx)
{
    _Atomic(_Atomic uint64_t *) *slot = &rt->slot_marks[idx >> PROC_CHUNK_SHIFT];
    if (atomic_load_explicit(slot, memory_order_acquire) != NULL)
        return GS_OK;
    int rc = GS_OK;
    pthread_mutex_lock(&rt->marks_lock);
    if (atomic_load_explicit(slot, memory_order_relaxed) == NULL) {
        _Atomic uint64_t *chunk = gs_calloc((size_t)1 << PROC_CHUNK_SHIFT, sizeof *chunk);
        if (chunk == NULL)
            rc = GS_ENOMEM;
        else /* release: the zeroed marks before the pointer (slot_mark's acquire) */
            atomic_store_explicit(slot, chunk, memory_order_release);
    }
    pthread_mutex_unlock(&rt->marks_lock);
    return rc;
}

uint32_t proc_table_high_water(gs_runtime *rt)
{
    return pool_high_water(&rt->procs);
}

int proc_table_alloc(gs_runtime *rt, proc **out)
{
    uint32_t idx;
    int rc = pool_alloc(&rt->procs, &idx);
    if (rc != GS_OK)
        return rc;
    if (marks_ensure(rt, idx) != GS_OK) {
        pool_free(&rt->procs, idx);
        return GS_ENOMEM;
    }
    proc *p = proc_table_at(rt, idx);
    /* A new generation, still closed: nobody can send to it before
     * proc_open. relaxed: published by proc_open's release. */
    uint64_t w = atomic_fetch_add_explicit(&p->ctl, UINT64_C(1) << 32, memory_order_relaxed);
    uint32_t gen = (uint32_t)(w >> 32) + 1;
    p->pid = pid_make(gen, rt->tag, idx);

    *out = p;
    return GS_OK;
}

void proc_open(proc *p, uint64_t extra_bits)
{
    /* release: the proc's initialisation (mailbox, ops, state, options)
     * happens before any sender's acquire increment that sees OPEN. */
    atomic_fetch_or_explicit(&p->ctl, CTL_OPEN | CTL_STOPPABLE | extra_bits, memory_order_release);
    /* A new mark: this generation, open, no timer yet. release: after the
     * initialisation, like the OPEN bit above. */
    atomic_store_explicit(slot_mark(proc_rt(p), pid_index(p->pid)), (uint64_t)pid_gen(p->pid) << 32 | MARK_OPEN,
                          memory_order_release);
}

void proc_table_free(gs_runtime *rt, proc *p)
{
    pool_free(&rt->procs, pid_index(p->pid));
}

int proc_acquire_word(gs_runtime *rt, gs_pid pid, uint64_t need, proc **out, uint64_t *word)
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
    if (word != NULL)
        *word = w;
    return GS_OK;
}

int proc_acquire(gs_runtime *rt, gs_pid pid, uint64_t need, proc **out)
{
    return proc_acquire_word(rt, pid, need, out, NULL);
}

void proc_release(proc *p)
{
    /* release: the message pushed under this reference happens before the
     * closer's acquire load that sees the count drop, so its drain sees it. */
    atomic_fetch_sub_explicit(&p->ctl, 1, memory_order_release);
}

uint64_t proc_close_begin(proc *p)
{
    /* Senders that increment after this see OPEN clear and back off (stop
     * requests still get in). */
    uint64_t was = atomic_fetch_and_explicit(&p->ctl, ~CTL_OPEN, memory_order_acq_rel);
    /* The mark follows (MARK_TIMERS stays for the exit's purge). */
    atomic_fetch_and_explicit(slot_mark(proc_rt(p), pid_index(p->pid)), ~MARK_OPEN, memory_order_acq_rel);
    return was;
}

/* Waits until no sender holds a reference (each is a few instructions
 * into a push, unless it was preempted: bounded spin, then yields). The
 * acquire load makes everything those senders wrote visible. */
void proc_wait_senders(proc *p)
{
    unsigned spins = 0;
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

void proc_close_end(proc *p)
{
    atomic_fetch_and_explicit(&p->ctl, ~(CTL_OPEN | CTL_STOPPABLE | CTL_KILLED | CTL_OPTS | CTL_SHUTDOWN),
                              memory_order_acq_rel);
    proc_wait_senders(p);
}

void proc_table_destroy(gs_runtime *rt)
{
    pool_destroy(&rt->procs);
    if (rt->slot_marks != NULL) {
        for (uint32_t i = 0; i < MARK_CHUNKS; i++)
            free((void *)atomic_load_explicit(&rt->slot_marks[i], memory_order_relaxed));
        free(rt->slot_marks);
        rt->slot_marks = NULL;
        pthread_mutex_destroy(&rt->marks_lock);
    }
}
