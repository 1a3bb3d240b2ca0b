/* many_servers.c - servers are cheap: start 100,000 of them.
 *
 * Starts N counter servers (N = argv[1], default 100000), casts one
 * increment to each, reads every count back with gs_call and checks that
 * they sum to N, then stops them all. Prints how fast each step went.
 *
 *   ./many_servers           # 100000 servers
 *   ./many_servers 1000000
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <genserver.h>

enum { COUNTER_INCREMENT = 1, COUNTER_GET = 2 };

static int counter_cast(gs_ctx *ctx, void *state, const gs_msg *msg)
{
    (void)ctx;
    if (msg->tag == COUNTER_INCREMENT)
        *(int64_t *)state += 1;
    return GS_OK;
}

static int counter_call(gs_ctx *ctx, void *state, const gs_msg *msg, gs_from from)
{
    if (msg->tag != COUNTER_GET)
        return GS_EINVAL;
    gs_reply(gs_ctx_runtime(ctx), from, state, sizeof(int64_t));
    return GS_OK;
}

/* No init: the state starts zeroed, which is the count we want. */
static const gs_server_ops counter_ops = {
    .name = "counter",
    .state_size = sizeof(int64_t),
    .handle_call = counter_call,
    .handle_cast = counter_cast,
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void report(const char *what, size_t n, double seconds)
{
    printf("%-8s %zu in %.3f s: %.0f per second\n", what, n, seconds,
           seconds > 0 ? (double)n / seconds : 0.0);
}

int main(int argc, char **argv)
{
    size_t n = 100000;
    if (argc > 1) {
        char *end;
        unsigned long long v = strtoull(argv[1], &end, 10);
        if (*end != '\0' || v == 0 || v > GS_MAX_SERVERS) {
            fprintf(stderr, "usage: %s [servers, 1..%u]\n", argv[0], GS_MAX_SERVERS);
            return 2;
        }
        n = (size_t)v;
    }

    gs_pid *pids = malloc(n * sizeof *pids);
    if (pids == NULL) {
        fprintf(stderr, "many_servers: out of memory\n");
        return 1;
    }
    gs_runtime *rt;
    int rc = gs_runtime_start(&rt, NULL);
    if (rc != GS_OK) {
        fprintf(stderr, "many_servers: gs_runtime_start: %s\n", gs_strerror(rc));
        free(pids);
        return 1;
    }

    int status = 1;
    size_t i = 0;
    double t0 = now_s();
    for (i = 0; i < n; i++) {
        if ((rc = gs_start(rt, &counter_ops, NULL, &pids[i])) != GS_OK) {
            fprintf(stderr, "many_servers: gs_start #%zu: %s\n", i, gs_strerror(rc));
            goto out;
        }
    }
    double t1 = now_s();
    for (i = 0; i < n; i++) {
        if ((rc = gs_cast(rt, pids[i], COUNTER_INCREMENT, NULL, 0)) != GS_OK) {
            fprintf(stderr, "many_servers: gs_cast #%zu: %s\n", i, gs_strerror(rc));
            goto out;
        }
    }
    double t2 = now_s();
    /* Each server got our cast before our call, so each count is 1. */
    int64_t sum = 0;
    for (i = 0; i < n; i++) {
        int64_t count = 0;
        rc = gs_call(rt, pids[i], COUNTER_GET, NULL, 0, &count, sizeof count, NULL, 10000);
        if (rc != GS_OK) {
            fprintf(stderr, "many_servers: gs_call #%zu: %s\n", i, gs_strerror(rc));
            goto out;
        }
        sum += count;
    }
    double t3 = now_s();
    for (i = 0; i < n; i++) {
        if ((rc = gs_stop(rt, pids[i], GS_NORMAL, 10000)) != GS_OK) {
            fprintf(stderr, "many_servers: gs_stop #%zu: %s\n", i, gs_strerror(rc));
            goto out;
        }
    }
    double t4 = now_s();

    report("started", n, t1 - t0);
    report("casts", n, t2 - t1);
    report("calls", n, t3 - t2);
    report("stopped", n, t4 - t3);
    printf("sum of counts: %" PRId64 " (expected %zu)\n", sum, n);
    if (sum != (int64_t)n) {
        fprintf(stderr, "many_servers: wrong sum %" PRId64 ", expected %zu\n", sum, n);
        goto out;
    }
    status = 0;

out:
    gs_runtime_stop(rt);
    free(pids);
    return status;
}
