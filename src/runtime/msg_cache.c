/* msg_cache.c - see msg_cache.h. */
#include "msg_cache.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"

void msg_cache_init(msg_cache *c)
{
    atomic_init(&c->returned, NULL);
    atomic_init(&c->nreturned, 0);
    c->local = NULL;
    c->nlocal = 0;
}

static msg *next_of(msg *m)
{
    /* relaxed: the chain was handed over whole by the exchange (acquire)
     * that took it, or built by this thread. */
    return (msg *)atomic_load_explicit(&m->node.next, memory_order_relaxed);
}

/* Moves the shared stack to the private list. */
static void take_returned(msg_cache *c)
{
    /* acquire: pairs with msg_cache_give's release CAS, so the links and
     * everything the freeing thread did with each message come first. */
    msg *chain = atomic_exchange_explicit(&c->returned, NULL, memory_order_acquire);
    if (chain == NULL)
        return;
    c->nlocal += atomic_exchange_explicit(&c->nreturned, 0, memory_order_relaxed); /* a hint */
    msg *tail = chain;
    if (c->local != NULL) { /* only from trim, in a lull: a walk of the chain is fine then */
        while (next_of(tail) != NULL)
            tail = next_of(tail);
        atomic_store_explicit(&tail->node.next, (mbox_node *)c->local, memory_order_relaxed);
    }
    c->local = chain;
}

msg *msg_cache_new(gs_runtime *rt, msg_cache *c, uint8_t kind, uint32_t tag, const void *data, size_t len)
{
    if (len > MSG_CACHE_PAYLOAD) {
        msg *m = msg_new(rt, kind, tag, data, len);
        if (m != NULL)
            m->sender = GS_NOPID;
        return m;
    }
    if (c->local == NULL)
        take_returned(c);
    msg *m = c->local;
    if (m != NULL) {
        c->local = next_of(m);
        if (c->nlocal > 0)
            c->nlocal--;
    } else if ((m = gs_malloc(sizeof(msg) + MSG_CACHE_PAYLOAD)) == NULL) {
        return NULL;
    }
    msg_header_init(m, kind, tag, GS_NOPID, len, c);
    if (len > 0)
        memcpy(m->data, data, len);
    return m;
}

void msg_cache_give(msg_cache *c, msg *m)
{
    msg *head = atomic_load_explicit(&c->returned, memory_order_relaxed);
    do
        atomic_store_explicit(&m->node.next, (mbox_node *)head, memory_order_relaxed);
    /* release: publishes the link (and this thread's use of m) to the
     * owner's acquire exchange. */
    while (!atomic_compare_exchange_weak_explicit(&c->returned, &head, m, memory_order_release,
                                                  memory_order_relaxed));
    atomic_fetch_add_explicit(&c->nreturned, 1, memory_order_relaxed);
}

void msg_cache_trim(msg_cache *c)
{
    if (c->nlocal + atomic_load_explicit(&c->nreturned, memory_order_relaxed) <= MSG_CACHE_KEEP)
        return;
    take_returned(c);
    /* Count exactly now: the hint may be off by the pushes that raced the
     * exchange. */
    uint32_t kept = 0;
    msg *last = NULL, *rest = c->local;
    while (rest != NULL && kept < MSG_CACHE_KEEP) {
        last = rest;
        rest = next_of(rest);
        kept++;
    }
    if (last != NULL)
        atomic_store_explicit(&last->node.next, NULL, memory_order_relaxed);
    else
        c->local = NULL;
    c->nlocal = kept;
    while (rest != NULL) {
        msg *next = next_of(rest);
        free(rest);
        rest = next;
    }
}

void msg_cache_destroy(msg_cache *c)
{
    take_returned(c);
    for (msg *m = c->local, *next; m != NULL; m = next) {
        next = next_of(m);
        free(m);
    }
    c->local = NULL;
    c->nlocal = 0;
}
