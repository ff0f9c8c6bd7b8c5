/* config_limits.h: the `limits` table and server.trusted_proxies. */
#ifndef SESAME_CONFIG_LIMITS_H
#define SESAME_CONFIG_LIMITS_H

#include "config_table.h"

/* The `limits` table into a struct limits_rules: each rule "N/second|minute|hour" or false. */
config_kind config_limits_read;
/* server.trusted_proxies: an address or network, or a list of them, into a struct proxies. */
config_kind config_trusted_proxies;

#endif
