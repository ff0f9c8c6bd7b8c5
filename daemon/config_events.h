/* config_events.h: the events section of the configuration (the audit log and stored events). */
#ifndef SESAME_CONFIG_EVENTS_H
#define SESAME_CONFIG_EVENTS_H

#include <stdbool.h>

#include "config_table.h"

struct config_events {
	char *audit_log; /* "stderr", an absolute path, or NULL when off */
	bool store;	 /* a row in storage for each event */
	long retention;	 /* seconds a stored event is kept */
};

/* The kind of the top level's events key: the table into a struct config_events. */
config_kind config_events_read;

void config_events_defaults(struct config_events *ev);
void config_events_clear(struct config_events *ev);

#endif
