/*
 * sesamectl_keygen.c: sesamectl keygen, new keys for the tokens:
 *
 *   keygen [-f] [-g GROUP] [-a HS256|HS384|HS512] FILE
 *   keygen [-f] [-g GROUP] -a RS256|RS384|RS512|ES256|ES384|ES512 [-b BITS] PRIVATE PUBLIC
 *
 * An HMAC secret (base64 of as many random bytes as the hash's output) or a key pair. The
 * secret or private key is mode 0600, or 0640 and GROUP's to read with --group; a public key
 * 0644. A file is never written over without --force, which writes beside it and renames;
 * a pair is both files or neither.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <libgen.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jwa.h"
#include "keys.h"
#include "sesamectl.h"

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

int ctl_keygen(int argc, char **argv)
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
