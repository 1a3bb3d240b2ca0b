/* links.c - two-way links and exit signals.
 *
 * Each server keeps its own list of linked pids (in proc_extra, touched
 * only by its worker). gs_link adds the other server to the caller's list
 * and sends it MSG_LINK so that it adds the caller to its own; gs_unlink
 * does the same with MSG_UNLINK. When a server exits it sends MSG_EXIT to
 * every linked server. A receiver that no longer lists the sender (it
 * unlinked meanwhile) ignores the signal; one that traps exits gets
 * GS_TAG_EXIT in handle_info; otherwise a reason other than GS_NORMAL
 * makes it exit with the same reason. Exit signals travel through the
 * mailbox, so they are handled in order with other messages.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "alloc.h"

/* A server's links: an open-addressing hash set of pids (linear probing,
 * power-of-two capacity), so that a supervisor with 100,000 children
 * links, unlinks and takes exit signals in constant time. Pid 0 marks an
 * empty place and pid 1 a removed one (no pid has runtime tag 0). */
#define LINK_EMPTY ((gs_pid)0)
#define LINK_GONE ((gs_pid)1)

static uint32_t link_hash(gs_pid pid, uint32_t mask)
{
    return (uint32_t)((pid * UINT64_C(0x9E3779B97F4A7C15)) >> 32) & mask;
}

/* The place holding pid, or -1. */
static int64_t links_find(const proc_extra *x, gs_pid pid)
{
    if (x == NULL || x->cap_links == 0)
        return -1;
    uint32_t mask = x->cap_links - 1;
    for (uint32_t i = link_hash(pid, mask), n = 0; n < x->cap_links; i = (i + 1) & mask, n++) {
        if (x->links[i] == pid)
            return i;
        if (x->links[i] == LINK_EMPTY)
            return -1;
    }
    return -1;
}

static void links_put(gs_pid *table, uint32_t cap, gs_pid pid)
{
    uint32_t mask = cap - 1;
    uint32_t i = link_hash(pid, mask);
    while (table[i] != LINK_EMPTY && table[i] != LINK_GONE)
        i = (i + 1) & mask;
    table[i] = pid;
}

/* Makes room for one more (rehashing when three quarters are used,
 * removed places included). */
static int links_reserve(proc_extra *x)
{
    if ((uint64_t)(x->nlinks + x->gone_links + 1) * 4 <= (uint64_t)x->cap_links * 3)
        return GS_OK;
    uint32_t cap = 8; /* at most half full after the rehash */
    while ((uint64_t)(x->nlinks + 1) * 2 > cap)
        cap *= 2;
    gs_pid *table = gs_calloc(cap, sizeof(gs_pid));
    if (table == NULL)
        return GS_ENOMEM;
    for (uint32_t i = 0; i < x->cap_links; i++)
        if (x->links[i] != LINK_EMPTY && x->links[i] != LINK_GONE)
            links_put(table, cap, x->links[i]);
    free(x->links);
    x->links = table;
    x->cap_links = cap;
    x->gone_links = 0;
    return GS_OK;
}

static int links_add(proc *p, gs_pid pid)
{
    proc_extra *x = proc_extra_get(p);
    if (x == NULL)
        return GS_ENOMEM;
    if (links_find(x, pid) >= 0)
        return GS_OK;
    int rc = links_reserve(x);
    if (rc != GS_OK)
        return rc;
    links_put(x->links, x->cap_links, pid);
    x->nlinks++;
    return GS_OK;
}

static bool links_remove(proc *p, gs_pid pid)
{
    int64_t at = links_find(p->extra, pid);
    if (at < 0)
        return false;
    p->extra->links[at] = LINK_GONE;
    p->extra->nlinks--;
    p->extra->gone_links++;
    return true;
}

static int send_pid_msg(gs_runtime *rt, uint8_t kind, gs_pid to, gs_pid about)
{
    msg *m = msg_new(rt, kind, 0, &about, sizeof about);
    if (m == NULL)
        return GS_ENOMEM;
    return msg_send(rt, to, m);
}

int links_join_new(proc *parent, proc *child)
{
    int rc = links_add(child, parent->pid);
    if (rc != GS_OK)
        return rc;
    rc = links_add(parent, child->pid);
    if (rc != GS_OK)
        (void)links_remove(child, parent->pid);
    return rc;
}

int gs_link(gs_ctx *ctx, gs_pid other)
{
    proc *p = (proc *)ctx;
    if (p == NULL || other == p->pid)
        return GS_EINVAL;
    if (other == GS_NOPID)
        return GS_ENOPROC;
    int rc = links_add(p, other);
    if (rc != GS_OK)
        return rc;
    rc = send_pid_msg(proc_rt(p), MSG_LINK, other, p->pid);
    if (rc != GS_OK)
        (void)links_remove(p, other);
    return rc;
}

int gs_unlink(gs_ctx *ctx, gs_pid other)
{
    proc *p = (proc *)ctx;
    if (p == NULL)
        return GS_EINVAL;
    if (links_remove(p, other))
        (void)send_pid_msg(proc_rt(p), MSG_UNLINK, other, p->pid); /* gone already: nothing to undo */
    return GS_OK;
}

void gs_trap_exits(gs_ctx *ctx, int on)
{
    if (ctx != NULL)
        ((proc *)ctx)->trap_exits = on != 0;
}

void links_on_link(proc *p, const msg *m)
{
    gs_pid from;
    memcpy(&from, m->data, sizeof from);
    if (links_add(p, from) != GS_OK) {
        /* Cannot hold the link: break it from the other side at once. */
        gs_exit_signal s = {.pid = p->pid, .reason = GS_ENOMEM};
        msg *e = msg_new(proc_rt(p), MSG_EXIT, GS_TAG_EXIT, &s, sizeof s);
        if (e != NULL) {
            e->sender = p->pid;
            (void)msg_send(proc_rt(p), from, e);
        }
    }
}

void links_on_unlink(proc *p, const msg *m)
{
    gs_pid from;
    memcpy(&from, m->data, sizeof from);
    (void)links_remove(p, from);
}

bool links_on_exit(proc *p, const msg *m)
{
    gs_exit_signal s;
    memcpy(&s, m->data, sizeof s);
    if (!links_remove(p, s.pid))
        return false; /* unlinked meanwhile */
    if (p->trap_exits)
        return true;
    if (s.reason != GS_NORMAL) {
        p->exiting = true;
        p->exit_reason = s.reason;
    }
    return false;
}

void links_fire_all(proc *p, int reason)
{
    proc_extra *x = p->extra;
    if (x == NULL)
        return;
    for (uint32_t i = 0; i < x->cap_links; i++) {
        if (x->links[i] == LINK_EMPTY || x->links[i] == LINK_GONE)
            continue;
        gs_exit_signal s = {.pid = p->pid, .reason = reason};
        msg *e = msg_new(proc_rt(p), MSG_EXIT, GS_TAG_EXIT, &s, sizeof s);
        if (e == NULL) {
            log_write(proc_rt(p), GS_LOG_ERROR, "exit signal lost: out of memory");
            continue;
        }
        e->sender = p->pid;
        (void)msg_send(proc_rt(p), x->links[i], e); /* a dead receiver needs no signal */
    }
    free(x->links);
    x->links = NULL;
    x->nlinks = x->cap_links = x->gone_links = 0;
}
