/* config_jwt.h: the jwt section of the configuration. */
#ifndef SESAME_CONFIG_JWT_H
#define SESAME_CONFIG_JWT_H

#include "config_table.h"

/*
 * The kind of the top level's jwt key: reads the section into the struct token_config its
 * table entry points to, loading the keys it names. Unset, tokens are not configured.
 */
config_kind config_jwt_read;

#endif
