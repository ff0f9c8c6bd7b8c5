/*
 * config_events.c: reads the events section: where the audit log goes (events.audit_log:
 * "stderr", a file, or false), whether each event is also a row in storage (events.store) and
 * how long a stored event is kept (events.retention). The audit log is a log sink as the
 * access log is, read by the same kind; storing events needs a storage.
 */
#include "autoconfig.h"

#include "config_events.h"

#include <lua.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define EVENTS(field) offsetof(struct config_events, field)

static const struct config_key events_keys[] = {
    {"audit_log", config_log_file, 0, 0, EVENTS(audit_log)},
    {"store", config_bool, 0, 0, EVENTS(store)},
    {"retention", config_long, 1, 100L * 365 * 86400, EVENTS(retention)},
    {NULL, NULL, 0, 0, 0},
};

void config_events_read(struct config_reader *rd, int tbl, const struct config_key *key,
			const char *keypath)
{
	config_section_read(rd, config_field(rd, key), keypath, events_keys);
}

void config_events_defaults(struct config_events *ev)
{
	ev->audit_log = strdup("stderr");
	ev->store = false;
	ev->retention = 90L * 86400;
}

void config_events_clear(struct config_events *ev)
{
	free(ev->audit_log);
	ev->audit_log = NULL;
}
