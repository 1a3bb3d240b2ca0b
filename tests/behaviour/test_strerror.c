/* test_strerror.c - gs_strerror sentences. */
#include "common.h"

#include <limits.h>

static const struct {
    int code;
    const char *name;
} CODES[] = {
    {GS_OK, "GS_OK"},
    {GS_SHUTDOWN, "GS_SHUTDOWN"},
    {GS_KILLED, "GS_KILLED"},
    {GS_EINVAL, "GS_EINVAL"},
    {GS_ENOMEM, "GS_ENOMEM"},
    {GS_ENOPROC, "GS_ENOPROC"},
    {GS_ETIMEDOUT, "GS_ETIMEDOUT"},
    {GS_EDEADLK, "GS_EDEADLK"},
    {GS_EMSGSIZE, "GS_EMSGSIZE"},
    {GS_ESHUTDOWN, "GS_ESHUTDOWN"},
    {GS_ECANCELED, "GS_ECANCELED"},
    {GS_ENOENT, "GS_ENOENT"},
    {GS_EEXIST, "GS_EEXIST"},
    {GS_EAGAIN, "GS_EAGAIN"},
    {GS_ENOREPLY, "GS_ENOREPLY"},
    {GS_ENOTSUP, "GS_ENOTSUP"},
    {GS_ELIMIT, "GS_ELIMIT"},
    {GS_EBADRETURN, "GS_EBADRETURN"},
    {GS_EKILLED, "GS_EKILLED"},
};
#define NCODES (sizeof CODES / sizeof CODES[0])

Test(strerror, every_code_has_a_distinct_sentence, .timeout = 10)
{
    for (size_t i = 0; i < NCODES; i++) {
        const char *s = gs_strerror(CODES[i].code);
        cr_assert_not_null(s, "%s gave NULL", CODES[i].name);
        cr_assert_gt(strlen(s), 0, "%s gave an empty string", CODES[i].name);
        cr_assert_str_neq(s, "unknown error", "%s is not known to gs_strerror", CODES[i].name);
        cr_assert_str_neq(s, "user-defined reason", "%s is not known to gs_strerror",
                          CODES[i].name);
        for (size_t j = 0; j < i; j++)
            cr_assert_str_neq(s, gs_strerror(CODES[j].code), "%s and %s share the sentence '%s'",
                              CODES[i].name, CODES[j].name, s);
    }
}

Test(strerror, error_codes_are_negative_and_distinct, .timeout = 10)
{
    /* the first three entries are exit reasons, the rest error codes */
    for (size_t i = 3; i < NCODES; i++) {
        cr_assert_lt(CODES[i].code, 0, "%s is not negative", CODES[i].name);
        for (size_t j = 3; j < i; j++)
            cr_assert_neq(CODES[i].code, CODES[j].code);
    }
}

Test(strerror, strings_are_static, .timeout = 10)
{
    for (size_t i = 0; i < NCODES; i++)
        cr_assert_eq(gs_strerror(CODES[i].code), gs_strerror(CODES[i].code),
                     "%s: gs_strerror must return a static string", CODES[i].name);
}

Test(strerror, unknown_codes, .timeout = 10)
{
    const int unknown_neg[] = {-17, -100, -4242, INT_MIN, INT_MIN + 1};
    for (size_t i = 0; i < sizeof unknown_neg / sizeof unknown_neg[0]; i++) {
        const char *s = gs_strerror(unknown_neg[i]);
        cr_assert_not_null(s, "%d gave NULL", unknown_neg[i]);
        cr_assert_str_eq(s, "unknown error", "%d gave '%s'", unknown_neg[i], s);
    }
    const int user[] = {4, 42, 1000, INT_MAX}; /* 3 is GS_KILLED */
    for (size_t i = 0; i < sizeof user / sizeof user[0]; i++) {
        const char *s = gs_strerror(user[i]);
        cr_assert_not_null(s, "%d gave NULL", user[i]);
        cr_assert_str_eq(s, "user-defined reason", "%d gave '%s'", user[i], s);
    }
}
