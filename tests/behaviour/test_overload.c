/* Overload: bounded mailboxes (gs_start_with) and gs_server_info_get. */
#include "common.h"

#include <unistd.h>

enum { WORK = 1, BLOCK = 2 };

typedef struct slow_state {
    int64_t handled;
} slow_state;

static atomic_int gate_open;      /* BLOCK waits until the test opens it */
static atomic_llong handled_total;
static atomic_int seen[4][200000]; /* per producer, per sequence number */

typedef struct item {
    int producer;
    int seq;
} item;

static int slow_cast(gs_ctx *ctx, void *state, const gs_msg *m)
{
    if (m->tag == BLOCK) {
        while (!atomic_load(&gate_open))
            sleep_ms(1);
        return GS_OK;
    }
    item it;
    memcpy(&it, m->data, sizeof it);
    atomic_fetch_add(&seen[it.producer][it.seq], 1);
    atomic_fetch_add(&handled_total, 1);
    for (volatile int spin = 0; spin < 2000; spin++) /* slow */
        ;
    return GS_OK;
}

static int slow_info(gs_ctx *ctx, void *state, const gs_msg *m)
{
    atomic_fetch_add(&handled_total, 1);
    return GS_OK;
}

static const gs_server_ops slow_ops = {.name = "slow", .handle_cast = slow_cast, .handle_info = slow_info};

typedef struct flood {
    gs_runtime *rt;
    gs_pid to;
    int producer, count;
    int accepted, refused, other;
} flood;

static void *producer(void *arg)
{
    flood *f = arg;
    for (int i = 0; i < f->count; i++) {
        item it = {f->producer, i};
        int rc = gs_cast(f->rt, f->to, WORK, &it, sizeof it);
        if (rc == GS_OK)
            f->accepted++;
        else if (rc == GS_EAGAIN)
            f->refused++;
        else
            f->other++;
    }
    return NULL;
}

static long rss_kb(void)
{
    FILE *fp = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (fp != NULL) {
        if (fscanf(fp, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(fp);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static void reset(void)
{
    atomic_store(&gate_open, 1);
    atomic_store(&handled_total, 0);
    memset(seen, 0, sizeof seen);
}

Test(overload, bounded_reject_keeps_memory_flat_and_loses_nothing_accepted, .timeout = 120)
{
    reset();
    gs_runtime *rt = rt_new(2);
    gs_start_opts o = {.mailbox_max = 1000, .overflow = GS_OVERFLOW_REJECT, .stats = 1};
    gs_pid s;
    cr_assert_eq(gs_start_with(rt, &slow_ops, NULL, &o, &s), GS_OK);
    enum { PER = 100000 };
    flood f[4];
    pthread_t th[4];
    long rss0 = rss_kb();
    for (int i = 0; i < 4; i++) {
        f[i] = (flood){.rt = rt, .to = s, .producer = i, .count = PER};
        pthread_create(&th[i], NULL, producer, &f[i]);
    }
    long rss_peak = rss0;
    for (int k = 0; k < 20; k++) {
        sleep_ms(10);
        long r = rss_kb();
        if (r > rss_peak)
            rss_peak = r;
        gs_server_info info;
        cr_assert_eq(gs_server_info_get(rt, s, &info), GS_OK);
        cr_assert_leq(info.mailbox_len, 1000 + 8, "mailbox grew to %zu", info.mailbox_len);
    }
    int accepted = 0, refused = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(f[i].other, 0);
        accepted += f[i].accepted;
        refused += f[i].refused;
    }
    cr_assert_eq(accepted + refused, 4 * PER);
    cr_assert_gt(refused, 0, "the flood never hit the bound");
    /* every accepted message is handled exactly once */
    int64_t t0 = now_ms();
    while (atomic_load(&handled_total) < accepted && now_ms() - t0 < 60000)
        sleep_ms(5);
    cr_assert_eq(atomic_load(&handled_total), accepted);
    for (int p = 0; p < 4; p++)
        for (int i = 0; i < PER; i++)
            cr_assert_leq(atomic_load(&seen[p][i]), 1, "message %d/%d handled twice", p, i);
    gs_server_info info;
    cr_assert_eq(gs_server_info_get(rt, s, &info), GS_OK);
    cr_assert_eq(info.refused, (uint64_t)refused);
    cr_assert_eq(info.mailbox_max, 1000);
    cr_assert_eq(info.handled, (uint64_t)accepted);
    cr_assert_leq(info.mailbox_hwm, 1000 + 8);
    cr_assert_gt(info.callback_ns, 0);
    /* 1,000 queued messages of ~64 bytes: memory stays flat (generous bound) */
    cr_assert_lt(rss_peak - rss0, 64 * 1024, "RSS grew by %ld KiB", rss_peak - rss0);
    rt_free(rt);
}

Test(overload, drop_oldest_counts_what_it_drops, .timeout = 60)
{
    reset();
    atomic_store(&gate_open, 0);
    gs_runtime *rt = rt_new(2);
    gs_start_opts o = {.mailbox_max = 100, .overflow = GS_OVERFLOW_DROP_OLDEST, .stats = 1};
    gs_pid s;
    cr_assert_eq(gs_start_with(rt, &slow_ops, NULL, &o, &s), GS_OK);
    cr_assert_eq(gs_cast(rt, s, BLOCK, NULL, 0), GS_OK);
    sleep_ms(20);
    for (int i = 0; i < 1000; i++) {
        item it = {0, i};
        cr_assert_eq(gs_cast(rt, s, WORK, &it, sizeof it), GS_OK, "drop-oldest never refuses");
    }
    gs_server_info info;
    cr_assert_eq(gs_server_info_get(rt, s, &info), GS_OK);
    cr_assert_geq(info.mailbox_len, 1000);
    atomic_store(&gate_open, 1);
    int64_t t0 = now_ms();
    do {
        sleep_ms(5);
        cr_assert_eq(gs_server_info_get(rt, s, &info), GS_OK);
    } while (info.mailbox_len > 0 && now_ms() - t0 < 20000);
    cr_assert_eq(info.dropped + (uint64_t)atomic_load(&handled_total), 1000);
    cr_assert_geq(info.dropped, 1000 - 100 - 1);
    /* the newest survive: the last message was handled, the first dropped */
    cr_assert_eq(atomic_load(&seen[0][999]), 1);
    cr_assert_eq(atomic_load(&seen[0][0]), 0);
    rt_free(rt);
}

/* A slow server with room for 10 waiting messages, held in a BLOCK
 * callback until the test opens the gate (which then still counts). */
static gs_pid start_blocked_bounded(gs_runtime *rt)
{
    reset();
    atomic_store(&gate_open, 0);
    gs_start_opts o = {.mailbox_max = 10, .overflow = GS_OVERFLOW_REJECT};
    gs_pid s;
    cr_assert_eq(gs_start_with(rt, &slow_ops, NULL, &o, &s), GS_OK);
    cr_assert_eq(gs_cast(rt, s, BLOCK, NULL, 0), GS_OK);
    sleep_ms(20);
    return s;
}

Test(overload, timers_calls_and_stops_at_a_full_mailbox, .timeout = 30)
{
    gs_runtime *rt = rt_new(2);
    gs_pid s = start_blocked_bounded(rt);
    int ok = 0;
    for (int i = 0; i < 20; i++) {
        item it = {1, i};
        ok += gs_cast(rt, s, WORK, &it, sizeof it) == GS_OK;
    }
    /* the BLOCK message being handled still counts until its turn ends */
    cr_assert_eq(ok, 9);
    cr_assert_eq(gs_call(rt, s, WORK, NULL, 0, NULL, 0, NULL, 100), GS_EAGAIN, "a call to a full mailbox");
    /* a timer's message to the full mailbox is dropped and counted */
    cr_assert_eq(gs_send_after(rt, s, 5, NULL, 0, 1, NULL), GS_OK);
    sleep_ms(50);
    gs_server_info info;
    cr_assert_eq(gs_server_info_get(rt, s, &info), GS_OK);
    cr_assert_eq(info.refused, 11 + 1 + 1);
    atomic_store(&gate_open, 1);
    /* a stop request is never refused */
    cr_assert_eq(gs_stop(rt, s, GS_NORMAL, 10000), GS_OK);
    cr_assert_eq(atomic_load(&handled_total), 9);
    rt_free(rt);
}

/* Timers due together at a bounded mailbox: each message is weighed on
 * its own, the room left takes some, the rest are dropped and counted. */
Test(overload, timers_due_together_at_a_bounded_mailbox_are_weighed_one_by_one, .timeout = 30)
{
    gs_runtime *rt = rt_new(2);
    gs_pid s = start_blocked_bounded(rt);
    for (int i = 0; i < 20; i++)
        cr_assert_eq(gs_send_after(rt, s, 5, NULL, 0, 20, NULL), GS_OK);
    gs_server_info info;
    bool all_fired = false;
    for (int waited = 0; waited < 5000 && !all_fired; waited += 5) {
        sleep_ms(5);
        cr_assert_eq(gs_server_info_get(rt, s, &info), GS_OK);
        all_fired = info.mailbox_len - 1 + info.refused >= 20; /* less the BLOCK message */
    }
    cr_assert(all_fired, "the timers did not all fire");
    /* the BLOCK message being handled still counts until its turn ends */
    cr_assert_eq(info.refused, 11);
    atomic_store(&gate_open, 1);
    cr_assert_eq(gs_stop(rt, s, GS_NORMAL, 10000), GS_OK);
    cr_assert_eq(atomic_load(&handled_total), 9);
    rt_free(rt);
}

Test(overload, info_for_an_unbounded_server_and_bad_input, .timeout = 10)
{
    reset();
    atomic_store(&gate_open, 0);
    gs_runtime *rt = rt_new(1);
    gs_pid s = start_ok(rt, &slow_ops, NULL);
    cr_assert_eq(gs_cast(rt, s, BLOCK, NULL, 0), GS_OK);
    sleep_ms(20);
    for (int i = 0; i < 50; i++) {
        item it = {2, i};
        cr_assert_eq(gs_cast(rt, s, WORK, &it, sizeof it), GS_OK);
    }
    gs_server_info info;
    cr_assert_eq(gs_server_info_get(rt, s, &info), GS_OK);
    cr_assert_geq(info.mailbox_len, 50);
    cr_assert_eq(info.mailbox_max, 0);
    atomic_store(&gate_open, 1);
    cr_assert_eq(gs_server_info_get(NULL, s, &info), GS_EINVAL);
    cr_assert_eq(gs_server_info_get(rt, s, NULL), GS_EINVAL);
    cr_assert_eq(gs_server_info_get(rt, GS_NOPID, &info), GS_ENOPROC);
    gs_start_opts bad = {.overflow = 7};
    gs_pid p;
    cr_assert_eq(gs_start_with(rt, &slow_ops, NULL, &bad, &p), GS_EINVAL);
    cr_assert_eq(gs_start_with(rt, &slow_ops, NULL, NULL, &p), GS_OK, "NULL options: as gs_start");
    rt_free(rt);
}
