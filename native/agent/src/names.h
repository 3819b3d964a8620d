/* The one file-name rule of the protocol (section 2): input and output names are 1 to 128
 * ASCII characters from A-Z a-z 0-9 . _ + -, starting with a letter or digit. Such a name is
 * one path component everywhere (no '/', no "." or "..", no hidden file) and needs no
 * escaping in JSON or in an error message. Output patterns are names in which '*' matches any
 * run of characters and '?' one character. */
#ifndef AGENT_NAMES_H
#define AGENT_NAMES_H

#include <stdbool.h>
#include <stddef.h>

bool name_valid(const char *name, size_t len);
/* A pattern is valid when replacing each wildcard by a letter gives a valid name. */
bool pattern_valid(const char *pattern, size_t len);
/* Whether `name` (a valid name) matches `pattern`. */
bool pattern_match(const char *pattern, const char *name);

#endif
