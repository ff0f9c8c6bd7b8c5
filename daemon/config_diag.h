/* config_diag.h: the configuration's diagnostics: every problem found, with its file and line. */
#ifndef SESAME_CONFIG_DIAG_H
#define SESAME_CONFIG_DIAG_H

#include <stdbool.h>
#include <stddef.h>

/* Every problem found, each "FILE:LINE: message", in the order found. */
struct config_errors {
	char **msg;
	size_t n;
};

void config_errors_add(struct config_errors *errs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void config_errors_free(struct config_errors *errs);

/* Adds "FILE:LINE: keypath: message", with the line where src (the file's text) sets keypath. */
void config_error_at(struct config_errors *errs, const char *file, const char *src,
		     const char *keypath, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/*
 * The line of src (1-based) where the dotted key path is set, as in "server.workers", or 0.
 * Exposed for the unit tests.
 */
int config_find_line(const char *src, const char *keypath);

/* Whether key is likely a typo of known, worth a "did you mean" (at most two edits away). */
bool config_similar(const char *key, const char *known);

#endif
