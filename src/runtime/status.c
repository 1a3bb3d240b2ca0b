/* status.c - the sentence for every status code and exit reason. */
#include "genserver.h"

const char *gs_strerror(int status)
{
    switch (status) {
    case GS_OK: return "success (normal exit)";
    case GS_SHUTDOWN: return "shutdown (the server was stopped as part of a shutdown)";
    case GS_KILLED: return "killed (removed by gs_kill; terminate did not run)";
    case GS_NOREPLY: return "no reply yet (the reply comes later through gs_reply)";
    case GS_EINVAL: return "invalid argument";
    case GS_ENOMEM: return "out of memory";
    case GS_ENOPROC: return "no such server (it never existed or has stopped)";
    case GS_ETIMEDOUT: return "timed out";
    case GS_EDEADLK: return "deadlock avoided: a server cannot wait on itself";
    case GS_EMSGSIZE: return "message too large (or the reply did not fit the buffer)";
    case GS_ESHUTDOWN: return "the runtime is shutting down";
    case GS_ECANCELED: return "canceled: init refused to start the server";
    case GS_ENOENT: return "no such entry (already answered, given up, or never was)";
    case GS_EEXIST: return "the entry already exists";
    case GS_EAGAIN: return "resource temporarily unavailable; try again";
    case GS_ENOREPLY: return "the server returned from handle_call without replying";
    case GS_ENOTSUP: return "the server does not handle this kind of request";
    case GS_ELIMIT: return "a limit of the runtime was reached";
    case GS_EBADRETURN: return "a callback returned a value it may not return";
    case GS_EKILLED: return "the calling server was killed; its callback should return";
    default: return status < 0 ? "unknown error" : "user-defined reason";
    }
}
