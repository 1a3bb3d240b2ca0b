/* test_crash.c - crashing callbacks, crash reports and loggers. */
#include "common.h"

enum {
    C_OK = 1,
    C_CRASH_TAG = 777,   /* cast: return the crash code in the payload */
    C_BAD_RETURN = 778,  /* cast: return GS_NOREPLY from handle_cast (not allowed) */
    K_GET = 10,          /* call: reply count */
    K_CRASH_NO_REPLY = 4711, /* call: return GS_EINVAL without replying */
};

static atomic_int g_term_calls;
static atomic_int g_term_reason;
static atomic_int g_other_term_calls;
static logcap g_log;

typedef struct {
    int64_t count;
} crash_state;

static int cr_cast(gs_ctx *ctx, void *state, const gs_msg *msg)
{
    (void)ctx;
    crash_state *s = state;
    s->count++;
    if (msg->tag == C_CRASH_TAG) {
        int code = GS_EAGAIN;
        if (msg->len == sizeof code)
            memcpy(&code, msg->data, sizeof code);
        return code;
    }
    if (msg->tag == C_BAD_RETURN)
        return GS_NOREPLY;
    return GS_OK;
}

static int cr_call(gs_ctx *ctx, void *state, const gs_msg *msg, gs_from from)
{
    crash_state *s = state;
    if (msg->tag == K_CRASH_NO_REPLY)
        return GS_EINVAL;
    gs_reply(gs_ctx_runtime(ctx), from, &s->count, sizeof s->count);
    return GS_OK;
}

static void cr_terminate(gs_ctx *ctx, void *state, int reason)
{
    (void)ctx;
    (void)state;
    atomic_store(&g_term_reason, reason);
    atomic_fetch_add(&g_term_calls, 1);
}

static void other_terminate(gs_ctx *ctx, void *state, int reason)
{
    (void)ctx;
    (void)state;
    (void)reason;
    atomic_fetch_add(&g_other_term_calls, 1);
}

static const gs_server_ops crashy_ops = {
    .name = "crashy-server",
    .state_size = sizeof(crash_state),
    .handle_cast = cr_cast,
    .handle_call = cr_call,
    .terminate = cr_terminate,
};

static const gs_server_ops bystander_ops = {
    .name = "bystander",
    .state_size = sizeof(crash_state),
    .handle_cast = cr_cast,
    .handle_call = cr_call,
    .terminate = other_terminate,
};

static const gs_server_ops unnamed_ops = {
    .state_size = sizeof(crash_state),
    .handle_cast = cr_cast,
    .terminate = cr_terminate,
};

static gs_runtime *setup(unsigned workers)
{
    atomic_store(&g_term_calls, 0);
    atomic_store(&g_term_reason, 12345);
    atomic_store(&g_other_term_calls, 0);
    logcap_init(&g_log);
    gs_runtime *rt = rt_new(workers);
    cr_assert_eq(gs_set_logger(rt, logcap_fn, &g_log), GS_OK);
    return rt;
}

static void teardown_rt(gs_runtime *rt)
{
    rt_free(rt);
    logcap_destroy(&g_log);
}

/* ------------------------------------------------------------------ */

Test(crash, negative_return_crashes_with_that_reason_and_logs_report, .timeout = 15)
{
    gs_runtime *rt = setup(2);
    gs_pid other = start_ok(rt, &bystander_ops, NULL);
    gs_pid pid = start_ok(rt, &crashy_ops, NULL);
    char pidtxt[64];
    gs_pid_format(pid, pidtxt, sizeof pidtxt);
    cr_assert_eq(gs_cast(rt, pid, C_OK, NULL, 0), GS_OK);
    int code = GS_EAGAIN;
    cr_assert_eq(gs_cast(rt, pid, C_CRASH_TAG, &code, sizeof code), GS_OK);
    cr_assert(wait_int_eq(&g_term_calls, 1, 5000), "terminate did not run after the crash");
    cr_assert_eq(atomic_load(&g_term_reason), GS_EAGAIN, "terminate reason %d",
                 atomic_load(&g_term_reason));
    bool logged = logcap_wait(&g_log, GS_LOG_ERROR, "crashy-server", "777",
                              gs_strerror(GS_EAGAIN), NULL, 5000);
    if (!logged)
        logcap_dump(&g_log, "crash report");
    cr_assert(logged, "no GS_LOG_ERROR line with the name, last tag 777 and the reason text");
    cr_expect(logcap_count(&g_log, GS_LOG_ERROR, "crashy-server", pidtxt, NULL, NULL) > 0,
              "crash report does not contain the pid as gs_pid_format prints it (%s)", pidtxt);
    cr_expect(logcap_count(&g_log, GS_LOG_ERROR, "crashy-server", "-11", NULL, NULL) > 0,
              "crash report does not contain the reason number -11");
    /* the server is gone, the rest keeps working */
    cr_assert_eq(gs_cast(rt, pid, C_OK, NULL, 0), GS_ENOPROC);
    int64_t n = 0;
    cr_assert_eq(call_i64(rt, other, K_GET, 0, &n, 5000), GS_OK);
    gs_pid again = start_ok(rt, &crashy_ops, NULL);
    cr_assert_eq(call_i64(rt, again, K_GET, 0, &n, 5000), GS_OK);
    cr_assert_eq(n, 0);
    stop_ok(rt, again);
    stop_ok(rt, other);
    cr_assert_eq(atomic_load(&g_term_calls), 2);
    cr_assert_eq(atomic_load(&g_other_term_calls), 1);
    teardown_rt(rt);
}

Test(crash, unknown_negative_code_is_the_reason, .timeout = 15)
{
    gs_runtime *rt = setup(1);
    gs_pid pid = start_ok(rt, &crashy_ops, NULL);
    int code = -4242;
    cr_assert_eq(gs_cast(rt, pid, C_CRASH_TAG, &code, sizeof code), GS_OK);
    cr_assert(wait_int_eq(&g_term_calls, 1, 5000));
    cr_assert_eq(atomic_load(&g_term_reason), -4242);
    bool logged = logcap_wait(&g_log, GS_LOG_ERROR, "crashy-server", "-4242", NULL, NULL, 5000);
    if (!logged)
        logcap_dump(&g_log, "crash report");
    cr_assert(logged);
    teardown_rt(rt);
}

Test(crash, unnamed_server_crash_report, .timeout = 15)
{
    gs_runtime *rt = setup(1);
    gs_pid pid = start_ok(rt, &unnamed_ops, NULL);
    int code = GS_ENOMEM;
    cr_assert_eq(gs_cast(rt, pid, C_CRASH_TAG, &code, sizeof code), GS_OK);
    cr_assert(wait_int_eq(&g_term_calls, 1, 5000));
    bool logged = logcap_wait(&g_log, GS_LOG_ERROR, "(unnamed)", gs_strerror(GS_ENOMEM), "777",
                              NULL, 5000);
    if (!logged)
        logcap_dump(&g_log, "crash report");
    cr_assert(logged, "crash report of a server without a name must say (unnamed)");
    teardown_rt(rt);
}

Test(crash, handle_call_crash_without_reply_gives_enoproc, .timeout = 15)
{
    gs_runtime *rt = setup(2);
    gs_pid pid = start_ok(rt, &crashy_ops, NULL);
    char buf[8];
    int64_t t0 = now_ms();
    int rc = gs_call(rt, pid, K_CRASH_NO_REPLY, NULL, 0, buf, sizeof buf, NULL, 10000);
    int64_t took = now_ms() - t0;
    cr_assert_eq(rc, GS_ENOPROC, "%d (%s)", rc, gs_strerror(rc));
    cr_assert_lt(took, 5000, "caller waited %lld ms", (long long)took);
    cr_assert(wait_int_eq(&g_term_calls, 1, 5000));
    cr_assert_eq(atomic_load(&g_term_reason), GS_EINVAL);
    bool logged = logcap_wait(&g_log, GS_LOG_ERROR, "crashy-server", "4711",
                              gs_strerror(GS_EINVAL), NULL, 5000);
    if (!logged)
        logcap_dump(&g_log, "crash report");
    cr_assert(logged);
    teardown_rt(rt);
}

Test(crash, many_crashes_do_not_hurt_the_runtime, .timeout = 30)
{
    gs_runtime *rt = setup(2);
    gs_pid other = start_ok(rt, &bystander_ops, NULL);
    enum { N = 200 };
    for (int i = 0; i < N; i++) {
        gs_pid pid = start_ok(rt, &crashy_ops, NULL);
        int code = GS_EAGAIN;
        cr_assert_eq(gs_cast(rt, pid, C_CRASH_TAG, &code, sizeof code), GS_OK);
        cr_assert_eq(gs_cast(rt, other, C_OK, NULL, 0), GS_OK);
    }
    cr_assert(wait_int_eq(&g_term_calls, N, 10000), "only %d of %d crashed servers terminated",
              atomic_load(&g_term_calls), N);
    int64_t n = 0;
    cr_assert_eq(call_i64(rt, other, K_GET, 0, &n, 5000), GS_OK);
    cr_assert_eq(n, N);
    teardown_rt(rt);
    cr_assert_eq(atomic_load(&g_other_term_calls), 1);
}

Test(crash, clean_exits_write_no_crash_report, .timeout = 15)
{
    gs_runtime *rt = setup(2);
    gs_pid a = start_ok(rt, &crashy_ops, NULL);
    gs_pid b = start_ok(rt, &crashy_ops, NULL);
    gs_pid c = start_ok(rt, &crashy_ops, NULL);
    gs_pid d = start_ok(rt, &crashy_ops, NULL);
    int64_t n;
    cr_assert_eq(call_i64(rt, a, K_GET, 0, &n, 5000), GS_OK);
    cr_assert_eq(gs_stop(rt, a, GS_NORMAL, 5000), GS_OK);
    cr_assert_eq(gs_stop(rt, b, GS_SHUTDOWN, 5000), GS_OK);
    cr_assert_eq(gs_stop(rt, c, 42, 5000), GS_OK); /* user reason: abnormal, but no report */
    (void)d;                                       /* stopped by gs_runtime_stop */
    rt_free(rt);
    cr_assert_eq(atomic_load(&g_term_calls), 4);
    long errors = logcap_level_count(&g_log, GS_LOG_ERROR);
    long warnings = logcap_level_count(&g_log, GS_LOG_WARNING);
    if (errors || warnings)
        logcap_dump(&g_log, "unexpected errors/warnings");
    cr_assert_eq(errors, 0, "errors logged although nothing crashed");
    cr_assert_eq(warnings, 0, "warnings logged although nothing was wrong");
    cr_assert_eq(g_log.null_lines, 0);
    logcap_destroy(&g_log);
}

Test(crash, bad_return_value_is_warned_about, .timeout = 15)
{
    gs_runtime *rt = setup(2);
    gs_pid pid = start_ok(rt, &crashy_ops, NULL);
    cr_assert_eq(gs_cast(rt, pid, C_BAD_RETURN, NULL, 0), GS_OK);
    bool logged = logcap_wait(&g_log, GS_LOG_WARNING, NULL, NULL, NULL, NULL, 5000);
    if (!logged)
        logcap_dump(&g_log, "bad return");
    cr_assert(logged, "handle_cast returning GS_NOREPLY must be logged as a warning");
    teardown_rt(rt);
}

Test(crash, call_without_handler_is_warned_about, .timeout = 15)
{
    static const gs_server_ops no_call = {.name = "no-call-server", .handle_cast = cr_cast};
    gs_runtime *rt = setup(1);
    gs_pid pid = start_ok(rt, &no_call, NULL);
    char buf[4];
    cr_assert_eq(gs_call(rt, pid, 5, NULL, 0, buf, sizeof buf, NULL, 5000), GS_ENOTSUP);
    bool logged = logcap_wait(&g_log, GS_LOG_WARNING, NULL, NULL, NULL, NULL, 5000);
    if (!logged)
        logcap_dump(&g_log, "no handle_call");
    cr_assert(logged, "a call to a server without handle_call must be logged as a warning");
    teardown_rt(rt);
}

Test(crash, dropped_cast_is_logged_at_debug, .timeout = 15)
{
    static const gs_server_ops no_cast = {.name = "no-cast-server"};
    gs_runtime *rt = setup(1);
    gs_pid pid = start_ok(rt, &no_cast, NULL);
    cr_assert_eq(gs_cast(rt, pid, 5, "x", 1), GS_OK);
    bool logged = logcap_wait(&g_log, GS_LOG_DEBUG, NULL, NULL, NULL, NULL, 5000);
    if (!logged)
        logcap_dump(&g_log, "dropped cast");
    cr_assert(logged, "a cast dropped for lack of handle_cast must be logged at debug level");
    teardown_rt(rt);
}

Test(crash, runtime_stop_is_logged_at_info, .timeout = 15)
{
    gs_runtime *rt = setup(1);
    long before = logcap_level_count(&g_log, GS_LOG_INFO);
    rt_free(rt);
    long after = logcap_level_count(&g_log, GS_LOG_INFO);
    cr_assert_gt(after, before, "gs_runtime_stop logged no info line to the custom logger");
    logcap_destroy(&g_log);
}

Test(crash, set_logger_arguments, .timeout = 10)
{
    gs_runtime *rt = setup(1);
    cr_assert_eq(gs_set_logger(NULL, logcap_fn, &g_log), GS_EINVAL);
    cr_assert_eq(gs_set_logger(NULL, NULL, NULL), GS_EINVAL);
    /* back to the default logger: our capture stops receiving lines */
    cr_assert_eq(gs_set_logger(rt, NULL, NULL), GS_OK);
    long before = logcap_total(&g_log);
    gs_pid pid = start_ok(rt, &crashy_ops, NULL);
    int code = GS_EAGAIN;
    cr_assert_eq(gs_cast(rt, pid, C_CRASH_TAG, &code, sizeof code), GS_OK); /* report -> stderr */
    cr_assert(wait_int_eq(&g_term_calls, 1, 5000));
    sleep_ms(100);
    cr_assert_eq(logcap_total(&g_log), before, "the replaced logger still received lines");
    /* and a custom logger can be installed again */
    cr_assert_eq(gs_set_logger(rt, logcap_fn, &g_log), GS_OK);
    gs_pid p2 = start_ok(rt, &crashy_ops, NULL);
    cr_assert_eq(gs_cast(rt, p2, C_CRASH_TAG, &code, sizeof code), GS_OK);
    cr_assert(logcap_wait(&g_log, GS_LOG_ERROR, "crashy-server", NULL, NULL, NULL, 5000));
    teardown_rt(rt);
}
