/*
 * sesamectl.c: sesame's administration tool. Each subcommand is one function:
 *
 *   sesamectl [-c FILE] migrate          apply the storage schema's migrations now
 *   sesamectl keygen ...                 new token keys (sesamectl_keygen.c)
 *   sesamectl [-c FILE] hash-bench [N [P]]
 *                                        time N hashes with the configured password scheme,
 *                                        in P processes at once
 *   sesamectl [-c FILE] token revoke     revoke the tokens read from standard input, and
 *                                        their refresh families
 *   sesamectl [-c FILE] token revoke --user ID
 *                                        log user ID out everywhere: revoke every refresh
 *                                        family of it
 *   sesamectl [-c FILE] check            sesamed -t
 *   sesamectl [-c FILE] user ...         the users (sesamectl_user.c)
 *   sesamectl [-c FILE] status           the master's state (sesamectl_status.c)
 *   sesamectl [-c FILE] events ...       the stored auth events (sesamectl_events.c)
 *
 * It reads the same configuration as sesamed, checked the same way. Started as root, the
 * commands that touch storage (migrate, token revoke, user) change to server.user first, as
 * sesamed's workers do, once the configuration (and the keys) are read.
 */
#include "autoconfig.h"

#include <getopt.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "cycle.h"
#include "dbpool.h"
#include "events.h"
#include "log.h"
#include "plugin.h"
#include "plural.h"
#include "privs.h"
#include "sesamectl.h"
#include "tokens.h"

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "Usage: sesamectl [-c FILE] COMMAND [ARGS]\n"
	    "\n"
	    "  migrate              apply the storage schema's missing migrations\n"
	    "  keygen [-f] [-a ALG] [-b BITS] FILE [PUBLIC]\n"
	    "                       write a new HMAC secret for jwt.secret_file (HS256, HS384,\n"
	    "                       HS512; mode 0600), or a key pair for jwt.private_key_file\n"
	    "                       and jwt.public_key_file (RS256, RS384, RS512 with -b BITS,\n"
	    "                       default 3072; ES256, ES384, ES512); an existing file is\n"
	    "                       replaced only with -f (--force); with -g NAME (--group)\n"
	    "                       the secret or private key belongs to group NAME, mode 0640\n"
	    "  hash-bench [N [P]]   time N password hashes (default 5) with password.scheme,\n"
	    "                       in P processes at once (default 1)\n"
	    "  token revoke         revoke each token read from standard input (one a line) and\n"
	    "                       its refresh family, on every sesamed sharing the storage\n"
	    "  token revoke --user ID\n"
	    "                       log user ID out everywhere: revoke every refresh family\n"
	    "  user add EMAIL [--username NAME]\n"
	    "                       add a user; the password is asked twice on the terminal,\n"
	    "                       or read as one line of standard input\n"
	    "  user passwd EMAIL    set a new password and log the user out everywhere\n"
	    "  user disable EMAIL   refuse the user's log-ins and log it out everywhere\n"
	    "  user enable EMAIL    let a disabled user log in again\n"
	    "  user delete EMAIL [--yes]\n"
	    "                       delete the user and its sessions (asks, unless --yes)\n"
	    "  user list [--limit N] [--after ID] [--json]\n"
	    "  user show EMAIL [--json]\n"
	    "  check                check the configuration and the route scripts (sesamed -t)\n"
	    "  status [--json] [--socket PATH]\n"
	    "                       the running master's workers, generation and uptime, asked\n"
	    "                       on its control socket (PATH, else server.control)\n"
	    "  events [--user ID] [--since T] [--limit N] [--json]\n"
	    "                       the stored auth events (events.store), oldest first; T is\n"
	    "                       Unix seconds, an ISO 8601 date/time, or 30m, 1h, 7d ago\n"
	    "\n"
	    "  -c FILE  configuration file (default: %s)\n"
	    "\n"
	    "Started as root, migrate, token revoke, user and events run as server.user once the\n"
	    "configuration is read. Exit status: 0 done, 1 failed, 2 usage, 3 no such user,\n"
	    "4 refused.\n",
	    CONFIG_DEFAULT_PATH);
}

struct config *ctl_load(const char *path)
{
	struct config_errors errs = {0};
	struct config *cfg = config_load_unlogged(path, &errs);
	for (size_t i = 0; i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.msg[i]);
	config_errors_free(&errs);
	return cfg;
}

/*
 * The configuration, with this process changed to server.user (when started as root): the
 * storage it touches next is the workers' to write, the files it makes included. As root
 * without server.user it refuses, as sesamed does: the files it made would be root's. With
 * emits (a command that emits events), the audit log is opened first, as root, as a worker
 * opens it; the other commands leave it alone, so that a user who cannot write it can run them.
 */
static struct config *load_as_user(const char *path, bool emits)
{
	struct config *cfg = ctl_load(path);
	char why[LOG_ERR_MAX];
	if (cfg != NULL && emits && events_open(cfg) != 0) {
		config_free(cfg);
		return NULL;
	}
	if (cfg != NULL && (privs_check_root(&cfg->privs, why, sizeof(why)) != 0 ||
			    privs_drop(&cfg->privs, why, sizeof(why)) != 0)) {
		fprintf(stderr, "sesamectl: %s\n", why);
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

static int cmd_migrate(const char *path)
{
	struct config *cfg = load_as_user(path, false);
	char err[LOG_ERR_MAX] = "out of memory";
	if (cfg == NULL)
		return 1;
	int rc = dbpool_start(plugins_pool(cfg->plugins));
	if (rc == 0)
		rc = plugins_migrate(cfg->plugins, true, err, sizeof(err));
	dbpool_stop();
	if (rc != 0)
		fprintf(stderr, "sesamectl: storage: %s\n", err);
	else
		printf("sesamectl: the schema is up to date\n");
	config_free(cfg);
	return rc == 0 ? 0 : 1;
}

/* n hashes, one after the other: 0, and the last one's string in out; -1 if one fails. */
static int bench_run(const struct hasher *h, int n, char *out, size_t size)
{
	for (int i = 0; i < n; i++) {
		if (h->fn->hash(h->state, "hash-bench password", 19, out, size) != 0)
			return -1;
	}
	return 0;
}

/* The settings of a hash string, without the salt and hash that follow them. */
static void settings_only(char *out)
{
	char *end = strrchr(out, '$');
	if (end != NULL && end > out) {
		*end = '\0';
		if ((end = strrchr(out, '$')) != NULL)
			*end = '\0';
	}
}

/*
 * Runs bench_run in this process and in nproc - 1 children at once (processes, not threads:
 * as sesamed's workers hash, each in its own address space). 0 when every one succeeded.
 */
static int bench_all(const struct hasher *h, int n, int nproc, char *out, size_t size)
{
	pid_t kids[64];
	int rc = 0, started = 0;
	fflush(NULL);
	for (; started < nproc - 1; started++) {
		if ((kids[started] = fork()) < 0)
			break;
		if (kids[started] == 0)
			_exit(bench_run(h, n, out, size) == 0 ? 0 : 1);
	}
	rc = started < nproc - 1 ? -1 : bench_run(h, n, out, size);
	for (int i = 0; i < started; i++) {
		int status;
		if (waitpid(kids[i], &status, 0) != kids[i] || !WIFEXITED(status) ||
		    WEXITSTATUS(status) != 0)
			rc = -1;
	}
	return rc;
}

/* "hash" or "hashes", for a rate printed with %.0f. */
static const char *hashes(double rate)
{
	return plural((long long)(rate + 0.5), "hash", "hashes");
}

/*
 * hash-bench [N [P]]: P processes hash N times each, all at once: the time of one hash, and
 * with P > 1 the hashes per second of them all.
 */
static int cmd_hash_bench(const char *path, int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 5, nproc = argc > 2 ? atoi(argv[2]) : 1;
	struct config *cfg = ctl_load(path);
	if (cfg == NULL)
		return 1;
	const struct hasher *h = plugins_scheme(cfg->plugins);
	if (h == NULL || n < 1 || n > 1000 || nproc < 1 || nproc > 64) {
		fprintf(stderr, "sesamectl: %s\n",
			h == NULL ? "no password hasher is loaded"
				  : "N is from 1 to 1000, P from 1 to 64");
		config_free(cfg);
		return 1;
	}
	char out[512];
	uint64_t start = clock_mono_ns();
	if (bench_all(h, n, nproc, out, sizeof(out)) != 0) {
		fprintf(stderr, "sesamectl: %s: hashing failed\n", h->name);
		config_free(cfg);
		return 1;
	}
	double ms = (double)(clock_mono_ns() - start) / 1e6 / n;
	settings_only(out);
	printf("%s: %.1f ms per hash (%s), about %.0f %s per second per job thread", h->name, ms,
	       out, 1000.0 / ms, hashes(1000.0 / ms));
	if (nproc > 1)
		printf("; %d at once: about %.0f %s per second in all", nproc, 1000.0 * nproc / ms,
		       hashes(1000.0 * nproc / ms));
	printf("\n");
	config_free(cfg);
	return 0;
}

/* One line of standard input: the token, without white space or an "Bearer " before it. */
static char *token_of(char *line)
{
	line += strspn(line, " \t");
	if (strncasecmp(line, "Bearer ", 7) == 0)
		line += 7 + strspn(line + 7, " \t");
	size_t n = strlen(line);
	while (n > 0 && strchr(" \t\r\n", line[n - 1]) != NULL)
		line[--n] = '\0';
	return line;
}

/* Revokes one token; 0, or 1 with the reason on standard error. A token is never printed. */
static int revoke_one(const struct config *cfg, const struct storage *st, const char *token,
		      unsigned long lineno)
{
	json_t *claims = NULL;
	char identity[256], err[LOG_ERR_MAX] = "";
	enum token_verdict v = tokens_verify(&cfg->jwt, token, strlen(token), WANT_ANY, &claims,
					     identity, sizeof(identity));
	if (v == TOKEN_EXPIRED) {
		printf("sesamectl: line %lu: the token has expired: nothing to revoke\n", lineno);
		return 0;
	}
	if (v != TOKEN_OK) {
		fprintf(stderr, "sesamectl: line %lu: %s (not one this configuration accepts)\n",
			lineno, tokens_verdict_message(v));
		return 1;
	}
	struct token_revocation rev;
	int status = 1;
	const char *why = tokens_revocation(&cfg->jwt, claims, clock_wall_ms() / 1000, &rev);
	if (why != NULL) {
		fprintf(stderr, "sesamectl: line %lu: %s\n", lineno, why);
		goto done;
	}
	if (st->fn->token_revoke(st->state, rev.jti, rev.jti_until, rev.family, rev.family_until,
				 err, sizeof(err)) != SESAME_STORAGE_OK) {
		fprintf(stderr, "sesamectl: line %lu: storage: %s\n", lineno, err);
		goto done;
	}
	printf("sesamectl: line %lu: revoked token %s of %s%s\n", lineno, rev.jti, identity,
	       rev.family != NULL ? " and its refresh family" : "");
	status = 0;
done:
	json_decref(claims);
	return status;
}

static void count_family(void *ctx, const char *id)
{
	(*(unsigned long *)ctx)++;
}

/* token revoke --user ID: logs a user out everywhere (every refresh family of ID). */
static int revoke_user(const struct config *cfg, const struct storage *st, const char *user)
{
	char err[LOG_ERR_MAX] = "";
	unsigned long n = 0;
	enum sesame_storage_result r = st->fn->subject_revoke(
	    st->state, user, NULL, tokens_family_revoke_until(&cfg->jwt, clock_wall_ms() / 1000),
	    count_family, &n, err, sizeof(err));
	if (r != SESAME_STORAGE_OK) {
		fprintf(stderr, "sesamectl: storage: %s\n", err);
		return 1;
	}
	printf("sesamectl: revoked %lu refresh %s of %s\n", n, n == 1 ? "family" : "families",
	       user);
	return 0;
}

struct config *ctl_storage_open(const char *path, struct storage *st, bool emits)
{
	struct config *cfg = load_as_user(path, emits);
	char err[LOG_ERR_MAX] = "";
	if (cfg == NULL)
		return NULL;
	if (!plugins_storage(cfg->plugins, st)) {
		fprintf(stderr, "sesamectl: no storage is configured (storage.backend)\n");
		config_free(cfg);
		return NULL;
	}
	if (dbpool_start(plugins_pool(cfg->plugins)) != 0 ||
	    plugins_migrate(cfg->plugins, false, err, sizeof(err)) != 0 ||
	    plugins_worker_start(cfg->plugins) != 0) {
		fprintf(stderr, "sesamectl: storage: %s\n", err[0] != '\0' ? err : "cannot start");
		dbpool_stop();
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

void ctl_storage_close(struct config *cfg)
{
	plugins_worker_stop(cfg->plugins);
	dbpool_stop();
	config_free(cfg);
}

/*
 * token revoke: tokens come on standard input, never as arguments, which every user of the
 * machine may read. Each is verified with the configuration's keys first; its jti and its
 * family are then revoked in storage, which every worker of every sesamed fetches within
 * jwt.revocation_refresh.
 */
static int cmd_token(const char *path, int argc, char **argv)
{
	const char *user = NULL;
	if (argc == 4 && strcmp(argv[1], "revoke") == 0 && strcmp(argv[2], "--user") == 0 &&
	    argv[3][0] != '\0' && strlen(argv[3]) < 256)
		user = argv[3];
	else if (argc != 2 || strcmp(argv[1], "revoke") != 0) {
		fprintf(stderr, "Usage: sesamectl [-c FILE] token revoke < TOKENS\n"
				"       sesamectl [-c FILE] token revoke --user ID\n");
		return CTL_USAGE;
	}
	struct storage st;
	struct config *cfg = ctl_storage_open(path, &st, false);
	char *line = NULL;
	size_t cap = 0;
	unsigned long lineno = 0, tokens = 0;
	int status = 0;
	if (cfg == NULL)
		return CTL_FAILED;
	if (user != NULL) {
		status = revoke_user(cfg, &st, user);
		ctl_storage_close(cfg);
		return status;
	}
	while (getline(&line, &cap, stdin) != -1) {
		char *token = token_of(line);
		lineno++;
		if (token[0] == '\0')
			continue;
		tokens++;
		status |= revoke_one(cfg, &st, token, lineno);
	}
	if (line != NULL)
		sodium_memzero(line, cap);
	free(line);
	if (tokens == 0)
		fprintf(stderr, "sesamectl: no token on standard input\n");
	ctl_storage_close(cfg);
	return tokens == 0 ? CTL_FAILED : status;
}

/* check: sesamed -t, the same code, output and exit status. */
static int cmd_check(const char *path, int argc)
{
	if (argc != 1) {
		fprintf(stderr, "Usage: sesamectl [-c FILE] check\n");
		return CTL_USAGE;
	}
	clock_init();
	return cycle_check(path, 0);
}

int main(int argc, char **argv)
{
	const char *path = CONFIG_DEFAULT_PATH;
	int c;
	while ((c = getopt(argc, argv, "+c:h")) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	log_init(false);
	if (sodium_init() < 0)
		return 1;
	const char *cmd = argv[optind];
	if (strcmp(cmd, "migrate") == 0)
		return cmd_migrate(path);
	if (strcmp(cmd, "keygen") == 0)
		return ctl_keygen(argc - optind, argv + optind);
	if (strcmp(cmd, "hash-bench") == 0)
		return cmd_hash_bench(path, argc - optind, argv + optind);
	if (strcmp(cmd, "token") == 0)
		return cmd_token(path, argc - optind, argv + optind);
	if (strcmp(cmd, "user") == 0)
		return ctl_user(path, argc - optind, argv + optind);
	if (strcmp(cmd, "check") == 0)
		return cmd_check(path, argc - optind);
	if (strcmp(cmd, "status") == 0)
		return ctl_status(path, argc - optind, argv + optind);
	if (strcmp(cmd, "events") == 0)
		return ctl_events(path, argc - optind, argv + optind);
	fprintf(stderr, "sesamectl: unknown command '%s'\n", cmd);
	usage(stderr);
	return 2;
}
