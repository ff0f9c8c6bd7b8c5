/*
 * dbpool_config.c: the MariaDB pool's settings, the table storage.mariadb.
 *
 * The pool reads its table through the same host functions a plugin reads its own with, so
 * an unknown key, a wrong type or a value out of range is reported with its file and line as
 * any other. Every key has a default; the password may come from a file, resolved against the
 * configuration's folder, and is wiped from every buffer it passed through.
 */
#include "autoconfig.h"

#include "dbpool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "file.h"

static char *copy_or(const char *v, const char *fallback)
{
	return v != NULL ? strdup(v) : fallback != NULL ? strdup(fallback) : NULL;
}

/* The first line of the file name, resolved against the configuration's folder; every buffer
 * the file passed through is wiped. */
static char *read_password_file(const struct sesame_host *host, struct sesame_config *cfg,
				const char *name)
{
	size_t len = 0;
	char *path = file_resolve(host->config_dir, name);
	char *text = path != NULL ? file_read_len(path, &len) : NULL;
	char *password = NULL;
	if (text == NULL)
		host->config_error(cfg, "password_file", "cannot read %s", path ? path : name);
	else
		password = strndup(text, strcspn(text, "\r\n"));
	file_free_secret(text, len);
	free(path);
	return password;
}

void dbpool_config_read(struct dbpool_config *db, const struct sesame_host *host,
			struct sesame_config *cfg)
{
	const char *socket = NULL, *hostname = NULL, *user = "sesame", *password = NULL,
		   *password_file = NULL, *database = "sesame";
	long long port = 3306, size = 8, ct = 5, rt = 30, wt = 30;
	host->config_string(cfg, "socket", &socket);
	host->config_string(cfg, "host", &hostname);
	host->config_integer(cfg, "port", 1, 65535, &port);
	host->config_string(cfg, "user", &user);
	host->config_string(cfg, "password", &password);
	host->config_string(cfg, "password_file", &password_file);
	host->config_string(cfg, "database", &database);
	host->config_integer(cfg, "pool", 1, 256, &size);
	host->config_integer(cfg, "connect_timeout", 1, 300, &ct);
	host->config_integer(cfg, "read_timeout", 1, 3600, &rt);
	host->config_integer(cfg, "write_timeout", 1, 3600, &wt);
	if (socket == NULL && hostname == NULL)
		socket = "/run/mysqld/mysqld.sock";
	*db = (struct dbpool_config){.socket = copy_or(socket, NULL),
				     .host = copy_or(hostname, NULL),
				     .port = (int)port,
				     .user = copy_or(user, NULL),
				     .database = copy_or(database, NULL),
				     .size = (int)size,
				     .connect_timeout = (int)ct,
				     .read_timeout = (int)rt,
				     .write_timeout = (int)wt};
	if (password != NULL && password_file != NULL) {
		host->config_error(cfg, "password_file",
				   "give password or password_file, not both");
	} else if (password_file != NULL) {
		db->password = read_password_file(host, cfg, password_file);
	} else {
		db->password = copy_or(password, NULL);
	}
}

void dbpool_config_clear(struct dbpool_config *cfg)
{
	free(cfg->socket);
	free(cfg->host);
	free(cfg->user);
	if (cfg->password != NULL)
		file_free_secret(cfg->password, strlen(cfg->password));
	free(cfg->database);
	memset(cfg, 0, sizeof(*cfg));
}
