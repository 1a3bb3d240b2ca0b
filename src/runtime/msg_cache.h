/* msg_cache.h - messages one thread sends over and over, recycled without
 * malloc: the timer thread's (timer_thread.c).
 *
 * Problem: the timer thread allocates a message for every timer it fires
 * and a worker frees it. Each free lands in the worker's malloc cache, so
 * every allocation of the timer thread misses its own and goes to the
 * arena: a tenth of the timer thread's time in W7 was _int_malloc.
 *
 * Design: a message made here remembers its cache (msg.home). Whoever is
 * done with it (msg_free, any thread) pushes it onto the cache's shared
 * stack with one CAS; the owner takes that whole stack with one exchange
 * when its private list runs dry, so it never pops a shared node and the
 * stack has no ABA problem. Payloads up to MSG_CACHE_PAYLOAD bytes; larger
 * ones are plain messages. msg_cache_trim gives memory back when the owner
 * is idle; msg_cache_destroy frees everything once no message of the
 * cache can still be in use.
 */
#ifndef GS_RUNTIME_MSG_CACHE_H
#define GS_RUNTIME_MSG_CACHE_H

#include "internal.h"

#define MSG_CACHE_PAYLOAD 32u /* as much as a timer record holds inline */
#define MSG_CACHE_KEEP 1024u  /* messages msg_cache_trim leaves cached */

typedef struct msg_cache {
    _Alignas(64) _Atomic(msg *) returned; /* freed by anyone, linked through node.next */
    _Atomic uint32_t nreturned;           /* about how many: a hint for trimming */
    _Alignas(64) msg *local;              /* the owner's */
    uint32_t nlocal;
} msg_cache;

void msg_cache_init(msg_cache *c);
/* Owner only. As msg_new (sender GS_NOPID); NULL if out of memory. */
msg *msg_cache_new(gs_runtime *rt, msg_cache *c, uint8_t kind, uint32_t tag, const void *data, size_t len);
/* Any thread: takes back a message of c (msg_free calls it). */
void msg_cache_give(msg_cache *c, msg *m);
/* Owner only: frees cached messages beyond MSG_CACHE_KEEP. */
void msg_cache_trim(msg_cache *c);
/* No concurrent user, and no message of c still in use. */
void msg_cache_destroy(msg_cache *c);

#endif
