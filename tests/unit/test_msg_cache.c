/* test_msg_cache.c - unit tests of the timer thread's message cache
 * (src/runtime/msg_cache.c): a message freed with msg_free comes back to
 * its cache and is handed out again, filled in afresh; a payload too big
 * for the cache gets a plain message; messages freed by another thread
 * all come back; a trim keeps MSG_CACHE_KEEP; destroy frees the rest
 * (AddressSanitizer's leak check sees any loss). */
#include <criterion/criterion.h>

#include <pthread.h>
#include <string.h>

#include "runtime/msg_cache.h"

Test(msg_cache, a_freed_message_is_handed_out_again_filled_in_afresh, .timeout = 10)
{
    msg_cache c;
    msg_cache_init(&c);
    uint64_t v = 42;
    msg *m = msg_cache_new(NULL, &c, MSG_INFO, 7, &v, sizeof v);
    cr_assert_not_null(m);
    cr_assert_eq(m->home, &c);
    cr_assert_eq(m->tag, 7);
    cr_assert_eq(m->kind, MSG_INFO);
    cr_assert_eq(m->sender, GS_NOPID);
    cr_assert_eq(m->len, sizeof v);
    cr_assert_eq(memcmp(m->data, &v, sizeof v), 0);
    m->sender = 99; /* as a receiver might leave it */
    msg_free(m);
    msg *again = msg_cache_new(NULL, &c, MSG_IDLE, 8, NULL, 0);
    cr_assert_eq(again, m, "the freed message is reused");
    cr_assert_eq(again->tag, 8);
    cr_assert_eq(again->kind, MSG_IDLE);
    cr_assert_eq(again->sender, GS_NOPID);
    cr_assert_eq(again->len, 0);
    msg_free(again);
    msg_cache_destroy(&c);
}

Test(msg_cache, a_big_payload_gets_a_plain_message, .timeout = 10)
{
    msg_cache c;
    msg_cache_init(&c);
    unsigned char big[MSG_CACHE_PAYLOAD + 1];
    memset(big, 0xAB, sizeof big);
    msg *m = msg_cache_new(NULL, &c, MSG_INFO, 1, big, sizeof big);
    cr_assert_not_null(m);
    cr_assert_null(m->home, "not the cache's: malloc's");
    cr_assert_eq(m->sender, GS_NOPID);
    cr_assert_eq(memcmp(m->data, big, sizeof big), 0);
    msg_free(m);
    msg_cache_destroy(&c);
}

enum { MANY = 5000 };

typedef struct freeing {
    msg **msgs;
    int n;
} freeing;

static void *free_them(void *arg)
{
    freeing *f = arg;
    for (int i = 0; i < f->n; i++)
        msg_free(f->msgs[i]);
    return NULL;
}

Test(msg_cache, messages_freed_by_another_thread_all_come_back_and_a_trim_keeps_some, .timeout = 30)
{
    static msg *msgs[MANY];
    msg_cache c;
    msg_cache_init(&c);
    for (int i = 0; i < MANY; i++) {
        msgs[i] = msg_cache_new(NULL, &c, MSG_INFO, (uint32_t)i, &i, sizeof i);
        cr_assert_not_null(msgs[i]);
    }
    freeing f = {msgs, MANY};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, free_them, &f), 0);
    /* The owner keeps allocating while the other thread frees. */
    static msg *more[MANY];
    for (int i = 0; i < MANY; i++) {
        more[i] = msg_cache_new(NULL, &c, MSG_INFO, 1, NULL, 0);
        cr_assert_not_null(more[i]);
    }
    pthread_join(t, NULL);
    for (int i = 0; i < MANY; i++)
        msg_free(more[i]);
    msg_cache_trim(&c);
    cr_assert_eq(c.nlocal, MSG_CACHE_KEEP, "%u cached after the trim", c.nlocal);
    /* The trimmed cache still hands out its messages. */
    msg *m = msg_cache_new(NULL, &c, MSG_INFO, 2, NULL, 0);
    cr_assert_not_null(m);
    cr_assert_eq(c.nlocal, MSG_CACHE_KEEP - 1);
    msg_free(m);
    msg_cache_destroy(&c);
    cr_assert_null(c.local);
}
