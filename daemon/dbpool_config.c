/*
 * dbpool_config.c: the MariaDB pool's settings, the table storage.mariadb.
 *
 * The pool reads its table through the same host functions a plugin reads its own with, so
 * an unknown key, a wrong type or a value out of range is reported with its file and line as
 * any other. Every key has a default; the password may come from a file, resolved against the
 * configuration's folder, and is wiped from every buffer it passed through.
 *
 * The nodes come from socket or host/port (one node), or from hosts, a list the host
 * functions cannot read: the loader hands it over (dbpool_config_hosts), and each entry is
 * parsed here, so that `sesamed -t` names a bad one with its file and line.
 */
#include "autoconfig.h"

#include "dbpool.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "config_keys.h"
#include "file.h"

#define DEFAULT_PORT 3306
#define HOSTS_KEY    "storage.mariadb.hosts"

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
	struct dbpool_node *node = calloc(1, sizeof(*node));
	if (node != NULL)
		*node = (struct dbpool_node){.socket = copy_or(socket, NULL),
					     .host = copy_or(hostname, NULL),
					     .port = (int)port};
	*db = (struct dbpool_config){.nodes = node,
				     .nnodes = node != NULL ? 1 : 0,
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

static int parse_port(const char *text, int *port, char *why, size_t whylen)
{
	char *end;
	long v = strtol(text, &end, 10);
	if (*text < '0' || *text > '9' || *end != '\0' || v < 1 || v > 65535) {
		snprintf(why, whylen, "port '%s' is not a number from 1 to 65535", text);
		return -1;
	}
	*port = (int)v;
	return 0;
}

static bool plain_host(const char *s, size_t n)
{
	static const char allowed[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				      "0123456789.-_";
	for (size_t i = 0; i < n; i++) {
		if (strchr(allowed, s[i]) == NULL)
			return false;
	}
	return n > 0 && n <= 253;
}

/* "[addr]" or "[addr]:port": an IPv6 address. */
static int parse_bracketed(const char *entry, struct dbpool_node *out, char *why, size_t whylen)
{
	const char *close = strchr(entry, ']');
	size_t n = close != NULL ? (size_t)(close - entry - 1) : 0;
	if (close == NULL || n == 0 || strspn(entry + 1, "0123456789abcdefABCDEF:.") != n ||
	    (close[1] != '\0' && close[1] != ':')) {
		snprintf(why, whylen, "'%s' is not [IPv6 address] or [IPv6 address]:port", entry);
		return -1;
	}
	if (close[1] == ':' && parse_port(close + 2, &out->port, why, whylen) != 0)
		return -1;
	out->host = strndup(entry + 1, n);
	return 0;
}

int dbpool_node_parse(const char *entry, struct dbpool_node *out, char *why, size_t whylen)
{
	*out = (struct dbpool_node){.port = DEFAULT_PORT};
	if (entry[0] == '/') {
		if (strlen(entry) >= sizeof(((struct sockaddr_un *)NULL)->sun_path)) {
			snprintf(why, whylen, "the socket path '%s' is too long", entry);
			return -1;
		}
		out->socket = strdup(entry);
		return 0;
	}
	if (entry[0] == '[')
		return parse_bracketed(entry, out, why, whylen);
	const char *colon = strchr(entry, ':');
	size_t n = colon != NULL ? (size_t)(colon - entry) : strlen(entry);
	if (colon != NULL && strchr(colon + 1, ':') != NULL) {
		snprintf(why, whylen, "'%s': an IPv6 address goes in brackets ([::1]:3306)", entry);
		return -1;
	}
	if (!plain_host(entry, n)) {
		snprintf(why, whylen, "'%s' is neither a socket (an absolute path) nor host[:port]",
			 entry);
		return -1;
	}
	if (colon != NULL && parse_port(colon + 1, &out->port, why, whylen) != 0)
		return -1;
	out->host = strndup(entry, n);
	return 0;
}

void dbpool_node_name(const struct dbpool_node *node, char *out, size_t outlen)
{
	if (node->socket != NULL)
		snprintf(out, outlen, "%s", node->socket);
	else if (strchr(node->host, ':') != NULL)
		snprintf(out, outlen, "[%s]:%d", node->host, node->port);
	else
		snprintf(out, outlen, "%s:%d", node->host, node->port);
}

void dbpool_node_clear(struct dbpool_node *node)
{
	free(node->socket);
	free(node->host);
	memset(node, 0, sizeof(*node));
}

static void free_nodes(struct dbpool_node *nodes, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dbpool_node_clear(&nodes[i]);
	free(nodes);
}

/* hosts names the nodes: host, port and socket would name another. */
static bool alone(struct config_reader *rd, int tbl)
{
	static const char *const others[] = {"host", "port", "socket"};
	bool ok = true;
	for (size_t i = 0; tbl != 0 && i < 3; i++) {
		lua_pushstring(rd->L, others[i]);
		if (lua_rawget(rd->L, tbl) != LUA_TNIL) {
			config_fail(rd, HOSTS_KEY,
				    "hosts and %s are both set: give the nodes in hosts alone, or "
				    "one server with host/port or socket",
				    others[i]);
			ok = false;
		}
		lua_pop(rd->L, 1);
	}
	return ok;
}

/* The parsed entries of list, or NULL after reporting each bad one. */
static struct dbpool_node *parse_all(struct config_reader *rd, char **list, size_t n)
{
	struct dbpool_node *nodes = calloc(n, sizeof(*nodes));
	bool ok = nodes != NULL;
	for (size_t i = 0; nodes != NULL && i < n; i++) {
		char why[300];
		if (dbpool_node_parse(list[i], &nodes[i], why, sizeof(why)) != 0) {
			config_fail(rd, HOSTS_KEY, "item %zu: %s", i + 1, why);
			ok = false;
		}
	}
	if (!ok) {
		free_nodes(nodes, n);
		nodes = NULL;
	}
	return nodes;
}

void dbpool_config_hosts(struct dbpool_config *db, struct config_reader *rd, int tbl)
{
	lua_State *L = rd->L;
	char **list = NULL;
	size_t n = 0;
	if (config_keys_recording())
		config_keys_note("storage.mariadb", "hosts", "list", NULL, NULL);
	if (lua_isnil(L, -1))
		return;
	if (lua_type(L, -1) != LUA_TTABLE) {
		config_fail(rd, HOSTS_KEY, "expected a list of nodes, found %s",
			    luaL_typename(L, -1));
		return;
	}
	config_read_strings(rd, -1, HOSTS_KEY, &list, &n);
	struct dbpool_node *nodes = NULL;
	if (list != NULL && n == 0)
		config_fail(rd, HOSTS_KEY, "the list is empty: name one node at least");
	else if (list != NULL && n == (size_t)luaL_len(L, -1) && alone(rd, tbl))
		nodes = parse_all(rd, list, n);
	if (nodes != NULL) {
		free_nodes(db->nodes, db->nnodes);
		db->nodes = nodes;
		db->nnodes = n;
	}
	for (size_t i = 0; i < n; i++)
		free(list[i]);
	free(list);
}

void dbpool_config_clear(struct dbpool_config *cfg)
{
	free_nodes(cfg->nodes, cfg->nnodes);
	free(cfg->user);
	if (cfg->password != NULL)
		file_free_secret(cfg->password, strlen(cfg->password));
	free(cfg->database);
	memset(cfg, 0, sizeof(*cfg));
}
