/*
 * known_domain.c: a validator built out of the tree, as an operator would write one, that
 * reads a table of its own through the core's MariaDB pool (host->mariadb).
 *
 * It accepts an e-mail address whose domain is listed in a table (known_domain.table, by
 * default known_domains, column known_domain.column, by default domain), and refuses any
 * other. A validator's check runs on the event loop, where nothing may wait on a database, so
 * the list is read once, in init: the master has a pool while plugins are initialised, and a
 * reload reads the list again. Build it against the installed SDK:
 *
 *     cc -shared -fPIC -fvisibility=hidden $(pkg-config --cflags sesame-plugin) \
 *         $(pkg-config --cflags --libs libmariadb) -o known_domain.so known_domain.c
 */
#include <sesame/plugin.h>

#include <mysql.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DOMAIN_MAX 253

struct known {
	char (*domains)[DOMAIN_MAX + 1];
	size_t n;
};

/* The table's and the column's names go into SQL: plain names only. */
static bool plain_name(const char *s)
{
	size_t n = strlen(s);
	return n > 0 && n <= 64 &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == n;
}

static int add_domain(struct known *k, const char *domain)
{
	char(*grown)[DOMAIN_MAX + 1] = realloc(k->domains, (k->n + 1) * sizeof(*grown));
	if (grown == NULL)
		return -1;
	k->domains = grown;
	snprintf(k->domains[k->n++], DOMAIN_MAX + 1, "%s", domain);
	return 0;
}

/* Reads every domain of the table on one statement of the borrowed connection. */
static int read_domains(const struct sesame_host *host, void *conn, const char *sql,
			struct known *k, char *err, size_t errlen)
{
	char domain[DOMAIN_MAX + 1];
	unsigned long len = 0;
	MYSQL_BIND out = {.buffer_type = MYSQL_TYPE_STRING,
			  .buffer = domain,
			  .buffer_length = sizeof(domain) - 1,
			  .length = &len};
	MYSQL_STMT *stmt = host->mariadb->prepare(conn, sql, err, errlen);
	if (stmt == NULL)
		return -1;
	if (mysql_stmt_execute(stmt) != 0 || mysql_stmt_bind_result(stmt, &out) != 0)
		goto fail;
	int rc;
	while ((rc = mysql_stmt_fetch(stmt)) == 0 || rc == MYSQL_DATA_TRUNCATED) {
		domain[len < sizeof(domain) ? len : sizeof(domain) - 1] = '\0';
		if (add_domain(k, domain) != 0) {
			snprintf(err, errlen, "out of memory");
			mysql_stmt_free_result(stmt);
			return -1;
		}
	}
	mysql_stmt_free_result(stmt);
	if (rc == MYSQL_NO_DATA)
		return 0;
fail:
	snprintf(err, errlen, "%s", mysql_stmt_error(stmt));
	return -1;
}

static int init(const struct sesame_host *host, struct sesame_config *cfg, void **state)
{
	const char *table = "known_domains", *column = "domain";
	char sql[192], err[256] = "";
	void *conn = NULL;
	struct known *k = calloc(1, sizeof(*k));
	host->config_string(cfg, "table", &table);
	host->config_string(cfg, "column", &column);
	if (k == NULL)
		return -1;
	if (!plain_name(table) || !plain_name(column)) {
		host->config_error(cfg, plain_name(table) ? "column" : "table", "not a plain name");
		goto fail;
	}
	if (host->size < sizeof(struct sesame_host) || host->mariadb == NULL) {
		host->log(host, SESAME_LOG_ERROR,
			  "needs the core's MariaDB pool (storage.mariadb)");
		goto fail;
	}
	snprintf(sql, sizeof(sql), "SELECT `%s` FROM `%s`", column, table);
	conn = host->mariadb->acquire(err, sizeof(err));
	if (conn == NULL || read_domains(host, conn, sql, k, err, sizeof(err)) != 0) {
		if (conn != NULL)
			host->mariadb->release(conn, true);
		host->log(host, SESAME_LOG_ERROR, "cannot read %s: %s", table, err);
		goto fail;
	}
	host->mariadb->release(conn, false);
	host->log(host, SESAME_LOG_INFO, "%zu known %s", k->n, k->n == 1 ? "domain" : "domains");
	*state = k;
	return 0;
fail:
	free(k->domains);
	free(k);
	return -1;
}

static void fini(void *state)
{
	struct known *k = state;
	free(k->domains);
	free(k);
}

static int check(void *state, const char *value, size_t len, const char *const *related, char *out,
		 size_t outlen, char *msg, size_t msglen)
{
	const struct known *k = state;
	const char *at = memchr(value, '@', len);
	(void)related;
	if (len + 1 > outlen)
		return -1;
	for (size_t i = 0; at != NULL && i < k->n; i++) {
		size_t dlen = len - (size_t)(at + 1 - value);
		if (strlen(k->domains[i]) == dlen &&
		    strncasecmp(k->domains[i], at + 1, dlen) == 0) {
			memcpy(out, value, len);
			out[len] = '\0';
			return 1;
		}
	}
	snprintf(msg, msglen, "e-mail addresses of that domain are not accepted");
	return 0;
}

SESAME_VALIDATOR_PLUGIN("known_domain", "1.0", .init = init, .fini = fini, .check = check);
