/*
 * fuzz.h: what the libFuzzer targets share: a configuration of their own, written to a
 * temporary folder and loaded as sesamed loads it, plugins and keys included.
 */
#ifndef SESAME_FUZZ_H
#define SESAME_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* The built plugins and the source tree, as the Makefile passes them. */
#ifndef FUZZ_PLUGINDIR
#define FUZZ_PLUGINDIR "plugins"
#endif
#ifndef FUZZ_SRCDIR
#define FUZZ_SRCDIR "."
#endif

/*
 * Writes the configuration text (a printf format) to NAME.lua in the target's temporary
 * folder and loads it; aborts with the errors when it does not load, as a target without its
 * configuration finds nothing. The folder goes when the target exits.
 */
struct config *fuzz_config(const char *name, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Keeps every plugin of FUZZ_PLUGINDIR loaded for good. A target that frees its
 * configurations unloads their plugins, and libFuzzer would then clear the coverage counters
 * of a module no longer mapped.
 */
void fuzz_pin_plugins(void);

/* The fuzzer's input as a NUL-terminated copy (the caller frees it). */
char *fuzz_string(const uint8_t *data, size_t size);

/* The temporary folder of fuzz_config. */
const char *fuzz_dir(void);

#endif
