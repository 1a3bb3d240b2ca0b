/* test_mailbox_len.c - the mailbox length a server's counters give
 * (runtime/internal.h, mailbox_waiting): what bounded mailboxes and
 * gs_server_info_get read. */
#include <criterion/criterion.h>

#include "runtime/internal.h"

/* A mailbox's length is two counters read one after the other while
 * senders and the owner move them: `taken` may be ahead of the `pushed`
 * read a moment earlier. That is an empty mailbox, not four billion
 * messages (a bounded mailbox refused casts for it). */
Test(mailbox, a_length_read_with_taken_ahead_is_zero, .timeout = 10)
{
    cr_assert_eq(mailbox_waiting(100, 100), 0);
    cr_assert_eq(mailbox_waiting(100, 40), 60);
    cr_assert_eq(mailbox_waiting(100, 103), 0, "taken ahead of pushed");
    cr_assert_eq(mailbox_waiting(5, UINT32_MAX - 2), 8, "the counters wrap");
    cr_assert_eq(mailbox_waiting(UINT32_MAX - 2, 5), 0, "taken ahead across the wrap");
}
