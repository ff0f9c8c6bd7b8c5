/*
 * config_keys.c: the list of configuration keys, as the readers meet them.
 *
 * Nothing here knows a key: the table reader notes each key of a table it checks or reads,
 * and the host functions note each key a plugin reads, with the value it holds before the
 * read (its default). Loading a configuration that sets almost nothing, with recording on,
 * thus lists every key that configuration's readers know, with the defaults they keep.
 */
#include "autoconfig.h"

#include "config_keys.h"

#include <stdlib.h>
#include <string.h>

struct key_entry {
	char *path, *type, *range, *def;
};

static bool recording;
static struct key_entry *entries;
static size_t nentries;

void config_keys_record(bool on)
{
	recording = on;
}

bool config_keys_recording(void)
{
	return recording;
}

static struct key_entry *find_or_add(const char *path)
{
	for (size_t i = 0; i < nentries; i++) {
		if (strcmp(entries[i].path, path) == 0)
			return &entries[i];
	}
	struct key_entry *grown = realloc(entries, (nentries + 1) * sizeof(*grown));
	if (grown == NULL)
		return NULL;
	entries = grown;
	entries[nentries] = (struct key_entry){.path = strdup(path)};
	return entries[nentries].path != NULL ? &entries[nentries++] : NULL;
}

static void fill(char **field, const char *value)
{
	if (*field == NULL && value != NULL)
		*field = strdup(value);
}

void config_keys_note(const char *section, const char *name, const char *type, const char *range,
		      const char *def)
{
	char path[192];
	if (!recording)
		return;
	snprintf(path, sizeof(path), "%s%s%s", section, *section ? "." : "", name);
	struct key_entry *e = find_or_add(path);
	if (e == NULL)
		return;
	fill(&e->type, type);
	fill(&e->range, range);
	fill(&e->def, def);
}

static int by_path(const void *a, const void *b)
{
	return strcmp(((const struct key_entry *)a)->path, ((const struct key_entry *)b)->path);
}

static const char *or_dash(const char *s)
{
	return s != NULL ? s : "-";
}

void config_keys_print(FILE *out)
{
	if (nentries > 0)
		qsort(entries, nentries, sizeof(*entries), by_path);
	for (size_t i = 0; i < nentries; i++) {
		const struct key_entry *e = &entries[i];
		fprintf(out, "%s\t%s\t%s\t%s\n", e->path, or_dash(e->type), or_dash(e->range),
			or_dash(e->def));
	}
}

void config_keys_free(void)
{
	for (size_t i = 0; i < nentries; i++) {
		free(entries[i].path);
		free(entries[i].type);
		free(entries[i].range);
		free(entries[i].def);
	}
	free(entries);
	entries = NULL;
	nentries = 0;
}
