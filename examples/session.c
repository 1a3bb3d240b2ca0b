/* session.c - timers in a server: a heartbeat and an inactivity timeout.
 *
 * A session server ticks a heartbeat every 20 ms (gs_send_interval) and
 * expires after 50 ms without a `touch`. Each touch re-arms the timeout:
 * it cancels the old timer (gs_cancel_timer) and arms a new one
 * (gs_send_after). A cancel can come too late, when the old timer has
 * fired and its message waits in the mailbox; gs_msg.timer tells that
 * late message from the current timer's, so the server ignores it. On
 * expiry the server cancels its heartbeat: no tick reaches it afterwards,
 * not even one already queued.
 *
 * Prints:
 *   touched 10 times, 10 ms apart: still alive
 *   session expired after 50 ms of silence
 *   heartbeat stopped: no tick after the cancel
 */
#include <stdbool.h>
#include <stdio.h>
#include <time.h>

#include <genserver.h>

enum { TOUCH = 1, STATUS = 2, HEARTBEAT = 3, EXPIRE = 4 };
enum { HEARTBEAT_MS = 20, IDLE_MS = 50 };

typedef struct session {
    gs_timer heartbeat, expiry;
    bool expired;
    int ticks_after_expiry; /* must stay 0 */
} session;

static void arm_expiry(gs_ctx *ctx, session *s)
{
    gs_runtime *rt = gs_ctx_runtime(ctx);
    if (s->expiry != 0)
        (void)gs_cancel_timer(rt, s->expiry); /* GS_ENOENT: fired already, its message is late */
    if (gs_send_after(rt, gs_self(ctx), EXPIRE, NULL, 0, IDLE_MS, &s->expiry) != GS_OK)
        s->expiry = 0;
}

static int session_init(gs_ctx *ctx, void *state, const void *arg)
{
    (void)arg;
    session *s = state;
    int rc = gs_send_interval(gs_ctx_runtime(ctx), gs_self(ctx), HEARTBEAT, NULL, 0, HEARTBEAT_MS, &s->heartbeat);
    if (rc != GS_OK)
        return rc;
    arm_expiry(ctx, s);
    return GS_OK;
}

static int session_cast(gs_ctx *ctx, void *state, const gs_msg *msg)
{
    session *s = state;
    if (msg->tag == TOUCH && !s->expired)
        arm_expiry(ctx, s);
    return GS_OK;
}

static int session_info(gs_ctx *ctx, void *state, const gs_msg *msg)
{
    session *s = state;
    if (msg->tag == HEARTBEAT) {
        if (s->expired)
            s->ticks_after_expiry++;
        return GS_OK;
    }
    if (msg->tag == EXPIRE && msg->timer == s->expiry && !s->expired) {
        /* The current timer's message, not a late one of a timer since
         * replaced: the session really was silent for IDLE_MS. */
        s->expired = true;
        (void)gs_cancel_timer(gs_ctx_runtime(ctx), s->heartbeat);
    }
    return GS_OK;
}

static int session_call(gs_ctx *ctx, void *state, const gs_msg *msg, gs_from from)
{
    (void)msg;
    const session *s = state;
    int status[2] = {s->expired, s->ticks_after_expiry};
    return gs_reply(gs_ctx_runtime(ctx), from, status, sizeof status);
}

static const gs_server_ops session_ops = {.name = "session",
                                          .state_size = sizeof(session),
                                          .init = session_init,
                                          .handle_cast = session_cast,
                                          .handle_info = session_info,
                                          .handle_call = session_call};

static void sleep_ms(int ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static bool status(gs_runtime *rt, gs_pid s, int out[2])
{
    return gs_call(rt, s, STATUS, NULL, 0, out, 2 * sizeof(int), NULL, 1000) == GS_OK;
}

int main(void)
{
    gs_runtime *rt;
    gs_pid s;
    if (gs_runtime_start(&rt, NULL) != GS_OK || gs_start(rt, &session_ops, NULL, &s) != GS_OK)
        return 1;
    int st[2] = {0, 0};
    for (int i = 0; i < 10; i++) {
        gs_cast(rt, s, TOUCH, NULL, 0);
        sleep_ms(10);
    }
    if (!status(rt, s, st))
        return 1;
    printf("touched 10 times, 10 ms apart: %s\n", st[0] ? "expired (the machine stalled)" : "still alive");
    for (int waited = 0; waited < 5000 && status(rt, s, st) && !st[0]; waited += 10)
        sleep_ms(10);
    if (!st[0])
        return 1;
    printf("session expired after %d ms of silence\n", IDLE_MS);
    sleep_ms(3 * HEARTBEAT_MS);
    if (!status(rt, s, st))
        return 1;
    printf("heartbeat stopped: %s\n", st[1] == 0 ? "no tick after the cancel" : "a tick came after the cancel");
    gs_stop(rt, s, GS_NORMAL, 1000);
    gs_runtime_stop(rt);
    return st[1] == 0 ? 0 : 1;
}
