/*
 * config_keys.h: the list of configuration keys, as the readers meet them.
 *
 * While recording is on, the table reader (config_table.c) and the plugins' host functions
 * (host.c) note every key they know or read, with its type, bounds and default; sesamed
 * --config-keys prints the list, and scripts/man-config builds sesame.lua(5) from it.
 */
#ifndef SESAME_CONFIG_KEYS_H
#define SESAME_CONFIG_KEYS_H

#include <stdbool.h>
#include <stdio.h>

/* Starts (or stops) noting keys; off by default, when noting costs a test of one flag. */
void config_keys_record(bool on);
bool config_keys_recording(void);

/*
 * Notes section.name: its type, its range and its default, each NULL when not known here.
 * A key noted twice keeps what it had and takes what it lacked.
 */
void config_keys_note(const char *section, const char *name, const char *type, const char *range,
		      const char *def);

/* Prints "KEY\tTYPE\tRANGE\tDEFAULT" per key, sorted by key, "-" for what is not known. */
void config_keys_print(FILE *out);

void config_keys_free(void);

#endif
