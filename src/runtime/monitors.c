/* monitors.c - gs_monitor / gs_demonitor and DOWN messages.
 *
 * A monitor is a record in a type-stable pool (a gs_ref names it by
 * generation and index, like a pid). Its state word decides every race:
 *     ACTIVE -> FIRED          the target exited; a DOWN is on its way
 *     ACTIVE -> DEMONITORED    gs_demonitor before the target exited
 *     FIRED  -> DEMONITORED    gs_demonitor after; the queued DOWN is dropped
 *     FIRED  -> FREE           the watcher takes the DOWN
 *     ACTIVE -> FREE           the target reclaims it: the watcher is gone
 * Ownership (who frees the record): while ACTIVE or DEMONITORED-before-
 * firing, the target (it keeps the record in its own list, which only its
 * worker touches; gs_monitor and gs_demonitor reach it by message); once
 * FIRED, the DOWN message. The DOWN message is allocated with the monitor,
 * so an exit never fails to notify for lack of memory. A target that is
 * already gone answers at once with reason GS_ENOPROC.
 *
 * Watchers that die first. Nothing tells the target when a watcher
 * exits, so a long-lived target (a registry) monitored by many
 * short-lived servers would keep their records, and their DOWN messages,
 * until it exits itself. Instead the target reclaims them as it goes:
 * each monitor it takes in (and each gs_demonitor it handles), it looks
 * at the next SWEEP_STEP records of its list from a cursor that walks the
 * list round and round, and frees a record whose watcher is no longer
 * alive (ACTIVE -> FREE, against gs_demonitor's ACTIVE -> DEMONITORED: the
 * loser leaves the record to the winner). New records go in at the head,
 * behind the cursor, so one turn looks at most at the L records the list
 * had when the turn began. With SWEEP_STEP = k and a list of L records,
 * every one of them is looked at within L/k + L/k^2 further monitors (the
 * rest of this turn, and the next, which also meets the at most L/k
 * records added meanwhile): a list whose watchers have all died is
 * cleared after L/k further monitors if the cursor is at the head, after
 * L/k + L/k^2 (3L/4 for k = 2) at worst. The work is a constant per
 * monitor taken in, on the target's own worker, and nothing on the
 * message path. Rejected: having the watcher's exit tell each target (a
 * message per monitor, and a per-watcher list that other threads would
 * have to reach).
 */
#include <stdlib.h>
#include <string.h>

#include "futex.h"
#include "internal.h"

enum { MON_FREE = 0, MON_ACTIVE = 1, MON_FIRED = 2, MON_DEMONITORED = 3 };
/* Records the target looks at per monitor it takes in: more than one, so
 * that the cursor outruns the inserts and a turn ends. */
#define SWEEP_STEP 2
#define MON_CHUNK_SHIFT 10
#define MON_MAX (1u << 24)

typedef struct mon_rec {
    _Atomic uint64_t state; /* generation << 2 | MON_* */
    /* Atomic: gs_demonitor reads it while the record may be recycled (the
     * generation check discards such a read). */
    _Atomic gs_pid target;
    gs_pid watcher;
    msg *down; /* the DOWN message, ready to send */
    struct mon_rec *prev, *next; /* the target's list (target's worker only) */
    uint32_t idx;
    bool in_list;
    _Atomic uint32_t free_link;
} mon_rec;

static inline uint64_t mon_word(uint64_t gen, unsigned st)
{
    return gen << 2 | st;
}

int monitors_init(gs_runtime *rt)
{
    atomic_init(&rt->monitors_in_use, 0);
    return pool_init(&rt->monitors, sizeof(mon_rec), offsetof(mon_rec, free_link), MON_CHUNK_SHIFT, MON_MAX);
}

/* Taking and giving back a record, counted for gs_runtime_stats.monitors.
 * relaxed: the count is a statistic that orders nothing; each update is
 * atomic, so the figure is exact once the threads involved are quiet, and
 * a reader synchronised with them (a reply, a join) sees at least their
 * updates. */
static int rec_take(gs_runtime *rt, uint32_t *idx)
{
    int rc = pool_alloc(&rt->monitors, idx);
    if (rc == GS_OK)
        atomic_fetch_add_explicit(&rt->monitors_in_use, 1, memory_order_relaxed);
    return rc;
}

static void rec_give_back(gs_runtime *rt, uint32_t idx)
{
    atomic_fetch_sub_explicit(&rt->monitors_in_use, 1, memory_order_relaxed);
    pool_free(&rt->monitors, idx);
}

static void rec_free(gs_runtime *rt, mon_rec *r)
{
    msg_free(r->down);
    r->down = NULL;
    uint64_t gen = atomic_load_explicit(&r->state, memory_order_relaxed) >> 2;
    atomic_store_explicit(&r->state, mon_word(gen, MON_FREE), memory_order_release);
    rec_give_back(rt, r->idx);
}

void monitors_destroy(gs_runtime *rt)
{
    /* Every server is gone, so every record should be free; free the
     * prepared messages of any that is not (defensive). */
    uint32_t high = pool_high_water(&rt->monitors);
    for (uint32_t i = 0; i < high; i++) {
        mon_rec *r = pool_at(&rt->monitors, i);
        if (r != NULL && (atomic_load_explicit(&r->state, memory_order_relaxed) & 3) != MON_FREE)
            msg_free(r->down);
    }
    pool_destroy(&rt->monitors);
}

/* The record a ref names, if its generation matches. */
static mon_rec *rec_of(gs_runtime *rt, gs_ref ref, uint64_t *word)
{
    if (pid_tag(ref) != rt->tag)
        return NULL;
    mon_rec *r = pool_at(&rt->monitors, pid_index(ref));
    if (r == NULL)
        return NULL;
    /* acquire: the fields written before the state was published. */
    uint64_t w = atomic_load_explicit(&r->state, memory_order_acquire);
    if ((w >> 2) != pid_gen(ref) || (w & 3) == MON_FREE)
        return NULL;
    *word = w;
    return r;
}

static bool alive(gs_runtime *rt, gs_pid pid)
{
    if (pid_tag(pid) != rt->tag)
        return false;
    proc *p = proc_table_at(rt, pid_index(pid));
    if (p == NULL)
        return false;
    uint64_t w = atomic_load_explicit(&p->ctl, memory_order_acquire);
    return (uint32_t)(w >> 32) == pid_gen(pid) && (w & CTL_OPEN) != 0;
}

/* ACTIVE -> FIRED and send the DOWN, or free a demonitored record. */
static void fire(gs_runtime *rt, mon_rec *r, int reason)
{
    uint64_t w = atomic_load_explicit(&r->state, memory_order_acquire);
    uint64_t gen = w >> 2;
    uint64_t expected = mon_word(gen, MON_ACTIVE);
    if (!atomic_compare_exchange_strong_explicit(&r->state, &expected, mon_word(gen, MON_FIRED),
                                                 memory_order_acq_rel, memory_order_acquire)) {
        rec_free(rt, r); /* demonitored: nobody wants the DOWN */
        return;
    }
    msg *m = r->down;
    r->down = NULL; /* the message now travels alone; the record is its */
    gs_down d;
    memcpy(&d, m->data, sizeof d);
    d.reason = reason;
    memcpy(m->data, &d, sizeof d);
    gs_pid watcher = r->watcher;
    /* The watcher may take the DOWN and free the record at once: no
     * access to r after the send. */
    if (msg_send(rt, watcher, m) != GS_OK) {
        /* msg_send freed m; the watcher is gone, so the record is still
         * ours to free. */
        atomic_store_explicit(&r->state, mon_word(gen, MON_FREE), memory_order_release);
        rec_give_back(rt, r->idx);
    }
}

int gs_monitor(gs_runtime *rt, gs_pid watcher, gs_pid target, gs_ref *out)
{
    if (rt == NULL || target == GS_NOPID)
        return GS_EINVAL;
    if (!alive(rt, watcher))
        return GS_ENOPROC;
    uint32_t idx;
    int rc = rec_take(rt, &idx);
    if (rc != GS_OK)
        return GS_ENOMEM;
    mon_rec *r = pool_at(&rt->monitors, idx);
    uint64_t gen = ((atomic_load_explicit(&r->state, memory_order_relaxed) >> 2) + 1) & 0xFFFFFFFFu;
    if (gen == 0)
        gen = 1;
    gs_ref ref = pid_make((uint32_t)gen, rt->tag, idx);
    gs_down d = {.ref = ref, .pid = target, .reason = 0};
    msg *down = msg_new(rt, MSG_DOWN, GS_TAG_DOWN, &d, sizeof d);
    msg *req = msg_new(rt, MSG_MONITOR, 0, &ref, sizeof ref);
    if (down == NULL || req == NULL) {
        msg_free(down);
        msg_free(req);
        rec_give_back(rt, idx);
        return GS_ENOMEM;
    }
    down->sender = GS_NOPID;
    r->idx = idx;
    r->watcher = watcher;
    r->down = down;
    r->in_list = false;
    r->prev = r->next = NULL;
    atomic_store_explicit(&r->target, target, memory_order_relaxed);
    /* release: publishes the fields to the target (through the message)
     * and to gs_demonitor (through rec_of's acquire). */
    atomic_store_explicit(&r->state, mon_word(gen, MON_ACTIVE), memory_order_release);
    if (out != NULL)
        *out = ref;
    if (msg_send(rt, target, req) != GS_OK)
        fire(rt, r, GS_ENOPROC); /* already gone (or going): DOWN at once */
    return GS_OK;
}

int gs_demonitor(gs_runtime *rt, gs_ref ref)
{
    if (rt == NULL)
        return GS_EINVAL;
    uint64_t w;
    mon_rec *r = rec_of(rt, ref, &w);
    if (r == NULL)
        return GS_ENOENT;
    gs_pid target = atomic_load_explicit(&r->target, memory_order_relaxed);
    unsigned st = w & 3;
    if (st != MON_ACTIVE && st != MON_FIRED)
        return GS_ENOENT;
    if (!atomic_compare_exchange_strong_explicit(&r->state, &w, mon_word(w >> 2, MON_DEMONITORED),
                                                 memory_order_acq_rel, memory_order_relaxed))
        return GS_ENOENT; /* fired and taken, or demonitored, meanwhile */
    if (st == MON_ACTIVE) {
        /* Let the target forget it now rather than at its exit. If it is
         * gone, its exit already freed the record or will. */
        msg *m = msg_new(rt, MSG_DEMONITOR, 0, &ref, sizeof ref);
        if (m != NULL)
            (void)msg_send(rt, target, m);
    }
    return GS_OK;
}

static void list_add(proc_extra *x, mon_rec *r)
{
    r->prev = NULL;
    r->next = x->monitors;
    if (x->monitors != NULL)
        x->monitors->prev = r;
    x->monitors = r;
    r->in_list = true;
}

static void list_remove(proc_extra *x, mon_rec *r)
{
    if (x->mon_cursor == r)
        x->mon_cursor = r->next; /* NULL: the next look starts at the head */
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        x->monitors = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    r->in_list = false;
}

/* Frees r if its watcher is gone and nobody has removed it meanwhile.
 * r is ACTIVE or DEMONITORED (FIRED records leave the list first). */
static bool reclaim(gs_runtime *rt, proc_extra *x, mon_rec *r)
{
    /* alive() compares the generation in the pid, so a new server in the
     * watcher's old slot does not pass for it. A stale read cannot make a
     * live watcher look dead: gs_monitor saw the watcher's ctl word open
     * before it sent us the record, that read happens before ours (the
     * message), so ours returns that value or a later one, and a slot
     * opens once per generation. */
    if (alive(rt, r->watcher))
        return false;
    /* relaxed: only the expected value for the CAS; a stale one fails it. */
    uint64_t w = atomic_load_explicit(&r->state, memory_order_relaxed);
    if ((w & 3) != MON_ACTIVE)
        return false; /* demonitored: its MSG_DEMONITOR is coming, and frees it */
    /* relaxed, both ways: the CAS only decides who frees the record, and
     * its atomicity alone does that. Against gs_demonitor's ACTIVE ->
     * DEMONITORED exactly one wins; if we lose, monitors_on_demonitor frees
     * the record when the message the winner sends arrives. If we win,
     * gs_demonitor's CAS fails (or its rec_of sees FREE, or a later
     * generation) and it touches nothing else. What we read below (down,
     * idx) came with MSG_MONITOR; the record's reuse is ordered after our
     * writes by pool_free's release and pool_alloc's acquire. The
     * generation stays, as in rec_free: gs_monitor bumps it on reuse. */
    if (!atomic_compare_exchange_strong_explicit(&r->state, &w, mon_word(w >> 2, MON_FREE),
                                                 memory_order_relaxed, memory_order_relaxed))
        return false;
    list_remove(x, r);
    msg_free(r->down);
    r->down = NULL;
    rec_give_back(rt, r->idx);
    return true;
}

/* Looks at the next SWEEP_STEP records from the cursor (see the top). */
static void sweep(gs_runtime *rt, proc_extra *x)
{
    for (int i = 0; i < SWEEP_STEP && x->monitors != NULL; i++) {
        mon_rec *r = x->mon_cursor != NULL ? x->mon_cursor : x->monitors;
        x->mon_cursor = r->next; /* before reclaim may unlink r */
        (void)reclaim(rt, x, r);
    }
}

void monitors_on_monitor(proc *p, const msg *m)
{
    gs_ref ref;
    memcpy(&ref, m->data, sizeof ref);
    uint64_t w;
    mon_rec *r = rec_of(proc_rt(p), ref, &w);
    if (r == NULL)
        return;
    if ((w & 3) == MON_DEMONITORED) {
        rec_free(proc_rt(p), r); /* removed before we ever saw it */
        return;
    }
    proc_extra *x = proc_extra_get(p);
    if (x == NULL) {
        fire(proc_rt(p), r, GS_ENOMEM); /* cannot keep it: tell the watcher now */
        return;
    }
    list_add(x, r);
    sweep(proc_rt(p), x);
}

void monitors_on_demonitor(proc *p, const msg *m)
{
    gs_ref ref;
    memcpy(&ref, m->data, sizeof ref);
    uint64_t w;
    mon_rec *r = rec_of(proc_rt(p), ref, &w);
    if (r == NULL || !r->in_list || (w & 3) != MON_DEMONITORED || p->extra == NULL)
        return;
    list_remove(p->extra, r);
    rec_free(proc_rt(p), r);
    sweep(proc_rt(p), p->extra);
}

/* Watcher side: takes the record of a DOWN. True if it must be delivered. */
bool monitors_on_down(proc *p, const msg *m)
{
    gs_down d;
    memcpy(&d, m->data, sizeof d);
    mon_rec *r = pool_at(&proc_rt(p)->monitors, pid_index(d.ref));
    uint64_t gen = pid_gen(d.ref);
    uint64_t expected = mon_word(gen, MON_FIRED);
    bool deliver = atomic_compare_exchange_strong_explicit(&r->state, &expected, mon_word(gen, MON_FREE),
                                                           memory_order_acq_rel, memory_order_relaxed);
    /* Either way the record is ours to free (FIRED or DEMONITORED after). */
    atomic_store_explicit(&r->state, mon_word(gen, MON_FREE), memory_order_release);
    rec_give_back(proc_rt(p), r->idx);
    return deliver;
}

void monitors_drop_down(gs_runtime *rt, const msg *m)
{
    gs_down d;
    memcpy(&d, m->data, sizeof d);
    mon_rec *r = pool_at(&rt->monitors, pid_index(d.ref));
    atomic_store_explicit(&r->state, mon_word(pid_gen(d.ref), MON_FREE), memory_order_release);
    rec_give_back(rt, r->idx);
}

/* The target's exit: every monitor fires (or is freed if demonitored). */
void monitors_fire_all(proc *p, int reason)
{
    proc_extra *x = p->extra;
    if (x == NULL)
        return;
    mon_rec *r = x->monitors;
    x->monitors = NULL;
    x->mon_cursor = NULL;
    while (r != NULL) {
        mon_rec *next = r->next;
        r->in_list = false;
        fire(proc_rt(p), r, reason);
        r = next;
    }
}
