/* counter.c - the classic GenServer example: a counter.
 *
 * A server owns an int64 count. Other code never touches it directly: it
 * sends the server messages. `increment` is a cast (fire and forget),
 * `get` is a call (waits for the reply).
 *
 * Prints:
 *   Current Count: 2
 *   Incremented Count: 3
 *   Counter Server Stopped.
 */
#include <inttypes.h>
#include <stdio.h>

#include <genserver.h>

/* The messages this server understands. Any tag below 0xFFFF0000 works. */
enum { COUNTER_INCREMENT = 1, COUNTER_GET = 2 };

/* Runs once, when the server starts: `arg` is the initial value. The
 * runtime has already allocated `state` (state_size bytes, zeroed). */
static int counter_init(gs_ctx *ctx, void *state, const void *arg)
{
    (void)ctx;
    *(int64_t *)state = arg ? *(const int64_t *)arg : 0;
    return GS_OK;
}

/* Casts: nobody waits for an answer. */
static int counter_cast(gs_ctx *ctx, void *state, const gs_msg *msg)
{
    (void)ctx;
    if (msg->tag == COUNTER_INCREMENT)
        *(int64_t *)state += 1;
    return GS_OK;
}

/* Calls: the caller waits until we reply. */
static int counter_call(gs_ctx *ctx, void *state, const gs_msg *msg, gs_from from)
{
    if (msg->tag != COUNTER_GET)
        return GS_EINVAL; /* an unknown request: crash, as Erlang would */
    int64_t *count = state;
    gs_reply(gs_ctx_runtime(ctx), from, count, sizeof *count);
    return GS_OK;
}

/* The server's behaviour: static const, since it must outlive the server. */
static const gs_server_ops counter_ops = {
    .name = "counter",
    .state_size = sizeof(int64_t),
    .init = counter_init,
    .handle_call = counter_call,
    .handle_cast = counter_cast,
};

/* Prints what went wrong and returns 1 (the exit status) if rc is an error. */
static int failed(const char *what, int rc)
{
    if (rc == GS_OK)
        return 0;
    fprintf(stderr, "counter: %s failed: %s\n", what, gs_strerror(rc));
    return 1;
}

int main(void)
{
    gs_runtime *rt;
    if (failed("gs_runtime_start", gs_runtime_start(&rt, NULL))) /* one worker per CPU */
        return 1;

    int64_t initial = 0;
    gs_pid counter;
    int status = 1;
    int64_t count;

    if (failed("gs_start", gs_start(rt, &counter_ops, &initial, &counter)))
        goto out;

    /* Two increments, then ask for the count. Messages from one sender are
     * handled in order, so the call sees both increments. */
    if (failed("gs_cast", gs_cast(rt, counter, COUNTER_INCREMENT, NULL, 0)) ||
        failed("gs_cast", gs_cast(rt, counter, COUNTER_INCREMENT, NULL, 0)) ||
        failed("gs_call", gs_call(rt, counter, COUNTER_GET, NULL, 0, &count, sizeof count,
                                  NULL, 5000)))
        goto out;
    printf("Current Count: %" PRId64 "\n", count);

    if (failed("gs_cast", gs_cast(rt, counter, COUNTER_INCREMENT, NULL, 0)) ||
        failed("gs_call", gs_call(rt, counter, COUNTER_GET, NULL, 0, &count, sizeof count,
                                  NULL, 5000)))
        goto out;
    printf("Incremented Count: %" PRId64 "\n", count);

    /* Stop the server and wait (at most 5 s) until it has terminated. */
    if (failed("gs_stop", gs_stop(rt, counter, GS_NORMAL, 5000)))
        goto out;
    printf("Counter Server Stopped.\n");
    status = 0;

out:
    gs_runtime_stop(rt); /* stops any server still running, frees everything */
    return status;
}
