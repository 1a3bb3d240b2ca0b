/* mailbox.h - a server's mailbox: intrusive, lock-free MPSC queue.
 *
 * Who may call what:
 *   mailbox_init          before the mailbox is shared
 *   mailbox_push          any thread, concurrently
 *   mailbox_pop           the single consumer (the worker running the server)
 *   mailbox_try_idle      the single consumer
 *   mailbox_tail_stale    the single consumer
 * See mailbox.c for the algorithm and the memory-order argument.
 */
#ifndef GS_QUEUE_MAILBOX_H
#define GS_QUEUE_MAILBOX_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct mbox_node {
    _Atomic(struct mbox_node *) next;
} mbox_node;

typedef struct mailbox {
    /* Producers exchange themselves in here. Bit 0 set means "empty and
     * nobody is scheduled to consume": the producer that sees the bit owns
     * the job of scheduling the consumer. */
    _Atomic(uintptr_t) head;
    mbox_node *tail; /* consumer only: last node consumed (or the stub) */
    mbox_node stub;  /* the node the queue starts with; never freed */
} mailbox;

/* Starts empty and *scheduled* (bit 0 clear): pushes do not ask for
 * scheduling until the consumer calls mailbox_try_idle once. This lets a
 * server finish init before anything runs it. */
void mailbox_init(mailbox *mb);

/* Appends n. Returns true if the mailbox was idle: the caller must then
 * schedule the consumer (exactly one pusher gets true per idle period). */
bool mailbox_push(mailbox *mb, mbox_node *n);

/* Takes the oldest node, or NULL if none is (fully) there yet. The node
 * returned stays the queue's tail until the next pop: the caller must not
 * free it now; mailbox_pop hands back the previous one via *retired
 * (NULL when it was the stub) for the caller to free. */
mbox_node *mailbox_pop(mailbox *mb, mbox_node **retired);

/* Called by the consumer when mailbox_pop returned NULL: marks the
 * mailbox idle if it is really empty. Returns true if it did (the consumer
 * must not touch the mailbox again until a pusher schedules it), false if
 * a push is under way or done (the consumer must run again later). */
bool mailbox_try_idle(mailbox *mb);

/* Any thread: clears the idle bit without pushing, so that the caller
 * owns the job of scheduling the consumer (used to wake a server when no
 * message can be allocated). True if the caller got that job. */
bool mailbox_claim(mailbox *mb);

/* The node still held as the tail (not the stub), for freeing at close;
 * NULL if the tail is the stub. Consumer only, after the last pop. */
mbox_node *mailbox_tail_node(mailbox *mb);

#endif
