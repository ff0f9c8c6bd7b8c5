/*
 * sesamectl.c: sesame's administration tool. Each subcommand is one function:
 *
 *   sesamectl [-c FILE] migrate          apply the storage schema's migrations now
 *   sesamectl keygen [-a ALG] FILE...    write a new HMAC secret (mode 0600), or an RS or ES
 *                                        key pair (private 0600, public 0644); never over a
 *                                        file without --force; --group NAME: the secret or
 *                                        private key is NAME's to read (mode 0640)
 *   sesamectl [-c FILE] hash-bench [N]   time N hashes with the configured password scheme
 *   sesamectl [-c FILE] token revoke     revoke the tokens read from standard input, and
 *                                        their refresh families
 *   sesamectl [-c FILE] token revoke --user ID
 *                                        log user ID out everywhere: revoke every refresh
 *                                        family of it
 *   sesamectl [-c FILE] check            sesamed -t
 *   sesamectl [-c FILE] user ...         the users (sesamectl_user.c)
 *   sesamectl [-c FILE] status           the master's state (sesamectl_status.c)
 *
 * It reads the same configuration as sesamed, checked the same way. Started as root, the
 * commands that touch storage (migrate, token revoke) change to server.user first, as
 * sesamed's workers do, once the configuration (and the keys) are read.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <jansson.h>
#include <libgen.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "cycle.h"
#include "dbpool.h"
#include "jwa.h"
#include "keys.h"
#include "log.h"
#include "plugin.h"
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
	    "  hash-bench [N]       time N password hashes (default 5) with password.scheme\n"
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
	    "\n"
	    "  -c FILE  configuration file (default: %s)\n"
	    "\n"
	    "Started as root, migrate, token revoke and user run as server.user once the\n"
	    "configuration is read. Exit status: 0 done, 1 failed, 2 usage, 3 no such user,\n"
	    "4 refused.\n",
	    CONFIG_DEFAULT_PATH);
}

struct config *ctl_load(const char *path)
{
	struct config_errors errs = {0};
	struct config *cfg = config_load(path, &errs);
	for (size_t i = 0; i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.msg[i]);
	config_errors_free(&errs);
	return cfg;
}

/*
 * The configuration, with this process changed to server.user (when started as root): the
 * storage it touches next is the workers' to write, the files it makes included. As root
 * without server.user it refuses, as sesamed does: the files it made would be root's.
 */
static struct config *load_as_user(const char *path)
{
	struct config *cfg = ctl_load(path);
	char why[LOG_ERR_MAX];
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
	struct config *cfg = load_as_user(path);
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

/* What keygen was asked for besides the algorithm and the files. */
struct keygen_opts {
	bool force;
	gid_t group; /* the secret's group, or NO_GROUP */
};
#define NO_GROUP ((gid_t)-1)

/* A file keygen writes: created anew, or with --force beside its target and renamed over it. */
struct out_file {
	const char *path;
	char tmp[4096];
	int fd;
};

/* Opens a file for a key; group (or NO_GROUP) is the file's group, mode its mode. */
static bool out_open(struct out_file *o, const char *path, mode_t mode, gid_t group, bool force)
{
	o->path = path;
	o->fd = -1;
	o->tmp[0] = '\0';
	if (!force)
		o->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	else if (snprintf(o->tmp, sizeof(o->tmp), "%s.XXXXXX", path) < (int)sizeof(o->tmp))
		o->fd = mkostemp(o->tmp, O_CLOEXEC);
	else
		errno = ENAMETOOLONG;
	/* The group first, then the mode exactly, whatever the umask. */
	if (o->fd >= 0 && (group == NO_GROUP || fchown(o->fd, (uid_t)-1, group) == 0) &&
	    fchmod(o->fd, mode) == 0)
		return true;
	fprintf(stderr, "sesamectl: %s: %s%s\n", path, strerror(errno),
		errno == EEXIST ? " (--force replaces it)" : "");
	if (o->fd >= 0) {
		close(o->fd);
		unlink(force ? o->tmp : path);
	}
	o->fd = -1;
	return false;
}

/* Writes text and closes the file; its name is put in place by out_commit. */
static bool out_write(struct out_file *o, const char *text)
{
	size_t len = strlen(text);
	bool ok = write(o->fd, text, len) == (ssize_t)len && fsync(o->fd) == 0;
	ok = close(o->fd) == 0 && ok;
	o->fd = -1;
	if (!ok)
		fprintf(stderr, "sesamectl: %s: cannot write the key: %s\n", o->path,
			strerror(errno));
	return ok;
}

static bool out_commit(struct out_file *o)
{
	if (o->tmp[0] == '\0' || rename(o->tmp, o->path) == 0)
		return true;
	fprintf(stderr, "sesamectl: %s: %s\n", o->path, strerror(errno));
	return false;
}

/* Removes what out_open created. */
static void out_drop(struct out_file *o)
{
	if (o->fd >= 0)
		close(o->fd);
	o->fd = -1;
	unlink(o->tmp[0] != '\0' ? o->tmp : o->path);
}

/* An HMAC secret, base64: as many random bytes as the hash's output (32, 48 or 64). */
static char *new_secret(const struct jwa_alg *a)
{
	size_t bytes = (size_t)EVP_MD_get_size(a->md());
	unsigned char key[64];
	size_t cap = sodium_base64_ENCODED_LEN(64, sodium_base64_VARIANT_ORIGINAL) + 1;
	char *text = malloc(cap);
	if (text == NULL)
		return NULL;
	randombytes_buf(key, bytes);
	sodium_bin2base64(text, cap, key, bytes, sodium_base64_VARIANT_ORIGINAL);
	sodium_memzero(key, sizeof(key));
	strcat(text, "\n");
	return text;
}

static void free_secret(char *text)
{
	if (text != NULL)
		sodium_memzero(text, strlen(text));
	free(text);
}

static int keygen_usage(void)
{
	fprintf(stderr, "sesamectl: keygen [-f] [-g GROUP] [-a HS256|HS384|HS512] FILE\n"
			"           keygen [-f] [-g GROUP] -a RS256|RS384|RS512 [-b BITS] PRIVATE "
			"PUBLIC\n"
			"           keygen [-f] [-g GROUP] -a ES256|ES384|ES512 PRIVATE PUBLIC\n");
	return 2;
}

/* The mode of a secret or private key: its group's to read when it has one. */
static mode_t secret_mode(const struct keygen_opts *k)
{
	return k->group == NO_GROUP ? 0600 : 0640;
}

static int keygen_secret(const struct jwa_alg *a, const char *path, const struct keygen_opts *k)
{
	struct out_file o;
	if (!out_open(&o, path, secret_mode(k), k->group, k->force))
		return 1;
	char *text = new_secret(a);
	bool ok = text != NULL && out_write(&o, text) && out_commit(&o);
	free_secret(text);
	if (!ok) {
		out_drop(&o);
		return 1;
	}
	printf("sesamectl: wrote a %s secret to %s (mode %04o)\n", a->name, path,
	       (unsigned)secret_mode(k));
	return 0;
}

/* Do paths a and b name one file, once their folders are resolved? */
static bool same_name(const char *a, const char *b)
{
	char *da = strdup(a), *db = strdup(b), *fa = strdup(a), *fb = strdup(b);
	char *ra = da != NULL ? realpath(dirname(da), NULL) : NULL;
	char *rb = db != NULL ? realpath(dirname(db), NULL) : NULL;
	bool same =
	    strcmp(a, b) == 0 || (ra != NULL && rb != NULL && fa != NULL && fb != NULL &&
				  strcmp(ra, rb) == 0 && strcmp(basename(fa), basename(fb)) == 0);
	free(ra);
	free(rb);
	free(da);
	free(db);
	free(fa);
	free(fb);
	return same;
}

/* Both files or neither: each is written in full before either is put in place. */
static int keygen_pair(const struct jwa_alg *a, int bits, const char *private_path,
		       const char *public_path, const struct keygen_opts *k)
{
	struct out_file priv, pub;
	char kid[KEYS_KID_LEN];
	if (same_name(private_path, public_path)) {
		fprintf(stderr, "sesamectl: the private and the public key need two files\n");
		return 2;
	}
	if (!out_open(&priv, private_path, secret_mode(k), k->group, k->force))
		return 1;
	if (!out_open(&pub, public_path, 0644, NO_GROUP, k->force)) {
		out_drop(&priv);
		return 1;
	}
	struct evp_pkey_st *pkey = keys_generate(a, bits);
	char *private_pem = pkey != NULL ? keys_pem(pkey, true) : NULL;
	char *public_pem = pkey != NULL ? keys_pem(pkey, false) : NULL;
	bool made = private_pem != NULL && public_pem != NULL && keys_thumbprint(pkey, a, kid);
	if (!made)
		fprintf(stderr, "sesamectl: cannot generate a %s key\n", a->name);
	bool ok = made && out_write(&priv, private_pem) && out_write(&pub, public_pem) &&
		  out_commit(&pub) && out_commit(&priv);
	free_secret(private_pem);
	free(public_pem);
	keys_free(pkey);
	if (!ok) {
		out_drop(&priv);
		out_drop(&pub);
		return 1;
	}
	printf("sesamectl: wrote an %s key pair: the private key to %s (mode %04o), the public key "
	       "to %s (mode 0644); kid %s\n",
	       a->name, private_path, (unsigned)secret_mode(k), public_path, kid);
	return 0;
}

/* --group NAME: the group's number into gid; -1 with a message when there is no such group. */
static int keygen_group(const char *name, gid_t *gid)
{
	errno = 0;
	const struct group *gr = getgrnam(name);
	if (gr != NULL) {
		*gid = gr->gr_gid;
		return 0;
	}
	if (errno != 0 && errno != ENOENT)
		fprintf(stderr, "sesamectl: cannot look group \"%s\" up: %s\n", name,
			strerror(errno));
	else
		fprintf(stderr,
			"sesamectl: no such group \"%s\" (systemd-sysusers makes sesame's)\n",
			name);
	return -1;
}

static int cmd_keygen(int argc, char **argv)
{
	static const struct option longopts[] = {{"algorithm", required_argument, NULL, 'a'},
						 {"bits", required_argument, NULL, 'b'},
						 {"force", no_argument, NULL, 'f'},
						 {"group", required_argument, NULL, 'g'},
						 {NULL, 0, NULL, 0}};
	const char *alg = "HS256";
	int c;
	long bits = 0;
	char *end;
	struct keygen_opts k = {.force = false, .group = NO_GROUP};
	optind = 1;
	while ((c = getopt_long(argc, argv, "a:b:fg:", longopts, NULL)) != -1) {
		switch (c) {
		case 'a':
			alg = optarg;
			break;
		case 'b':
			bits = strtol(optarg, &end, 10);
			if (bits <= 0 || *end != '\0')
				return keygen_usage();
			break;
		case 'f':
			k.force = true;
			break;
		case 'g':
			if (keygen_group(optarg, &k.group) != 0)
				return 2;
			break;
		default:
			return keygen_usage();
		}
	}
	if (jwa_parse(alg) < 0)
		return keygen_usage();
	const struct jwa_alg *a = jwa_get(jwa_parse(alg));
	int nfiles = a->family == 'H' ? 1 : 2;
	if (argc - optind != nfiles || (bits != 0 && a->family != 'R'))
		return keygen_usage();
	if (a->family == 'R' && bits == 0)
		bits = 3072;
	if (a->family == 'R' && (bits < KEYS_MIN_RSA_BITS || bits > KEYS_MAX_RSA_BITS)) {
		fprintf(stderr, "sesamectl: --bits is from %d to %d\n", KEYS_MIN_RSA_BITS,
			KEYS_MAX_RSA_BITS);
		return 2;
	}
	if (a->family == 'H')
		return keygen_secret(a, argv[optind], &k);
	return keygen_pair(a, (int)bits, argv[optind], argv[optind + 1], &k);
}

static int cmd_hash_bench(const char *path, int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 5;
	struct config *cfg = ctl_load(path);
	if (cfg == NULL)
		return 1;
	const struct hasher *h = plugins_scheme(cfg->plugins);
	if (h == NULL || n < 1 || n > 1000) {
		fprintf(stderr, "sesamectl: %s\n",
			h == NULL ? "no password hasher is loaded" : "N is from 1 to 1000");
		config_free(cfg);
		return 1;
	}
	char out[512];
	uint64_t start = clock_mono_ns();
	for (int i = 0; i < n; i++) {
		if (h->fn->hash(h->state, "hash-bench password", 19, out, sizeof(out)) != 0) {
			fprintf(stderr, "sesamectl: %s: hashing failed\n", h->name);
			config_free(cfg);
			return 1;
		}
	}
	double ms = (double)(clock_mono_ns() - start) / 1e6 / n;
	/* The settings, without the salt and hash that follow them. */
	char *end = strrchr(out, '$');
	if (end != NULL && end > out) {
		*end = '\0';
		if ((end = strrchr(out, '$')) != NULL)
			*end = '\0';
	}
	printf("%s: %.1f ms per hash (%s), about %.0f hashes per second per job thread\n", h->name,
	       ms, out, 1000.0 / ms);
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
	    st->state, user, tokens_family_revoke_until(&cfg->jwt, clock_wall_ms() / 1000),
	    count_family, &n, err, sizeof(err));
	if (r != SESAME_STORAGE_OK) {
		fprintf(stderr, "sesamectl: storage: %s\n", err);
		return 1;
	}
	printf("sesamectl: revoked %lu refresh %s of %s\n", n, n == 1 ? "family" : "families",
	       user);
	return 0;
}

struct config *ctl_storage_open(const char *path, struct storage *st)
{
	struct config *cfg = load_as_user(path);
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
	struct config *cfg = ctl_storage_open(path, &st);
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
		return cmd_keygen(argc - optind, argv + optind);
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
	fprintf(stderr, "sesamectl: unknown command '%s'\n", cmd);
	usage(stderr);
	return 2;
}
