#include "names.h"

#include "limits.h"

static bool alnum(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool name_char(char c)
{
    return alnum(c) || c == '.' || c == '_' || c == '+' || c == '-';
}

bool name_valid(const char *name, size_t len)
{
    if (len == 0 || len > MAX_NAME_LEN || !alnum(name[0]))
        return false;
    for (size_t i = 0; i < len; i++)
        if (!name_char(name[i]))
            return false;
    return true;
}

bool pattern_valid(const char *pattern, size_t len)
{
    if (len == 0 || len > MAX_NAME_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = pattern[i];
        bool wild = c == '*' || c == '?';
        if (i == 0 ? !(alnum(c) || wild) : !(name_char(c) || wild))
            return false;
    }
    return true;
}

/* Iterative glob match: on a mismatch, let the last '*' swallow one more character. Linear in
 * practice and never recursive, so a hostile pattern cannot blow the stack. */
bool pattern_match(const char *pattern, const char *name)
{
    const char *p = pattern, *n = name;
    const char *star = NULL, *resume = NULL;
    while (*n) {
        if (*p == '*') {
            star = p++;
            resume = n;
        } else if (*p == '?' || *p == *n) {
            p++;
            n++;
        } else if (star) {
            p = star + 1;
            n = ++resume;
        } else {
            return false;
        }
    }
    while (*p == '*')
        p++;
    return *p == '\0';
}
