/* config_limits.h: the `limits` table, server.trusted_proxies and server.metrics. */
#ifndef SESAME_CONFIG_LIMITS_H
#define SESAME_CONFIG_LIMITS_H

#include "config_table.h"

/* The `limits` table into a struct limits_rules: each rule "N/second|minute|hour" or false. */
config_kind config_limits_read;
/* server.trusted_proxies: an address or network, or a list of them, into a struct proxies. */
config_kind config_trusted_proxies;

/*
 * server.metrics: false (off), true, or { allow = ADDRESS or NETWORK, or a list of them } into
 * a struct config_metrics; config_metrics_defaults sets it on, for loopback peers only.
 */
config_kind config_metrics;
struct config_metrics;
void config_metrics_defaults(struct config_metrics *m);

#endif
