/*
 * sesamectl_user.c: sesamectl user, the operator's side of the users table:
 *
 *   user add EMAIL [--username NAME]   user passwd EMAIL   user disable EMAIL
 *   user enable EMAIL   user delete EMAIL [--yes]   user show EMAIL [--json]
 *   user verify EMAIL
 *   user list [--limit N] [--after ID] [--json]
 *
 * Each is a storage call of the configured backend, made as a worker makes it. Values go
 * through the same validator plugins and password policy as POST /users/register, and a new
 * password is hashed with password.scheme. A password is never an argument (every user of the
 * machine reads those) nor an environment variable: it is asked twice, without echo, on a
 * terminal, or read as one line of standard input, into a locked buffer that is wiped once
 * the password is hashed; Ctrl-C at the prompt turns the echo back on. Setting a
 * password and disabling a user log it out everywhere: every refresh family revoked, which
 * every worker learns within jwt.revocation_refresh. Each change is an event (registered,
 * password_changed, disabled, enabled, deleted, verified; "by": "sesamectl") in the audit log
 * and, with events.store, in storage.
 */
#include "autoconfig.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "events.h"
#include "log.h"
#include "sesamectl.h"
#include "tokens.h"

struct user_opts {
	const char *username;
	bool yes, json;
	long long limit, after;
	char **args; /* the positional arguments */
	int nargs;
};

/* What a command works with: the configuration, its storage and the user named. */
struct user_ctx {
	struct config *cfg;
	struct storage st;
	struct sesame_user user;
	char buf[2048];
	char subject[32]; /* the user's id as the sub claim writes it */
};

static int user_usage(void)
{
	fprintf(stderr, "Usage: sesamectl [-c FILE] user add EMAIL [--username NAME]\n"
			"       sesamectl [-c FILE] user passwd|disable|enable|verify EMAIL\n"
			"       sesamectl [-c FILE] user delete EMAIL [--yes]\n"
			"       sesamectl [-c FILE] user show EMAIL [--json]\n"
			"       sesamectl [-c FILE] user list [--limit N] [--after ID] [--json]\n"
			"A password is asked on the terminal or read from standard input.\n");
	return CTL_USAGE;
}

static bool number_arg(const char *s, long long min, long long *out)
{
	char *end;
	long long v = strtoll(s, &end, 10);
	if (*s == '\0' || *end != '\0' || v < min)
		return false;
	*out = v;
	return true;
}

/* argv[0] is the subcommand; options may come before or after the arguments. */
static int parse_opts(int argc, char **argv, struct user_opts *o)
{
	static const struct option longopts[] = {
	    {"username", required_argument, NULL, 'u'}, {"yes", no_argument, NULL, 'y'},
	    {"json", no_argument, NULL, 'j'},		{"limit", required_argument, NULL, 'l'},
	    {"after", required_argument, NULL, 'a'},	{NULL, 0, NULL, 0}};
	int c;
	*o = (struct user_opts){.limit = 100};
	optind = 0;
	while ((c = getopt_long(argc, argv, "u:yj", longopts, NULL)) != -1) {
		if (c == 'u')
			o->username = optarg;
		else if (c == 'y')
			o->yes = true;
		else if (c == 'j')
			o->json = true;
		else if (c == 'l' && number_arg(optarg, 1, &o->limit))
			continue;
		else if (c == 'a' && number_arg(optarg, 0, &o->after))
			continue;
		else
			return -1;
	}
	o->args = argv + optind;
	o->nargs = argc - optind;
	return 0;
}

/* ---- passwords ---- */

/*
 * A password is read with read(2), a byte at a time, into one locked buffer that is wiped
 * when freed (sodium_malloc): no stdio buffer and no grown-and-left copy ever holds it.
 * 16384 bytes are 4096 code points of 4 bytes, password.max_length's bound: anything longer
 * no policy accepts, and it is refused unread.
 */
#define PASSWORD_CAP 16384

/* The terminal's settings while the echo is off, for a signal to put back. */
static struct termios saved_tty;
static volatile sig_atomic_t tty_quiet;

/* Ctrl-C (or a kill) at the prompt: the echo is turned back on, then the signal does its work. */
static void restore_tty(int sig)
{
	if (tty_quiet)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
	signal(sig, SIG_DFL);
	raise(sig);
}

static const int tty_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
#define NSIGNALS (sizeof(tty_signals) / sizeof(tty_signals[0]))

/* Turns the echo off (on appears a newline still), with the signals ready to turn it on. */
static void quiet_tty(struct sigaction *old)
{
	struct sigaction sa = {.sa_handler = restore_tty};
	struct termios quiet = saved_tty;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < NSIGNALS; i++)
		sigaction(tty_signals[i], &sa, &old[i]);
	quiet.c_lflag &= ~(tcflag_t)ECHO;
	quiet.c_lflag |= ECHONL;
	tty_quiet = 1;
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
}

static void loud_tty(const struct sigaction *old)
{
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
	tty_quiet = 0;
	for (size_t i = 0; i < NSIGNALS; i++)
		sigaction(tty_signals[i], &old[i], NULL);
}

/* One line of fd 0 into buf: its length, -1 at the input's end, -2 when it does not fit. */
static ssize_t read_secret(char *buf, size_t cap)
{
	size_t n = 0;
	bool full = false;
	char c = '\0';
	ssize_t r;
	while ((r = read(STDIN_FILENO, &c, 1)) != 0 && c != '\n') {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			break;
		if (n + 1 < cap)
			buf[n++] = c;
		else
			full = true;
	}
	sodium_memzero(&c, sizeof(c));
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	if (r < 0 || (r == 0 && n == 0 && !full))
		return -1;
	return full ? -2 : (ssize_t)n;
}

/* One line of standard input, without echo when it is a terminal, into a locked buffer. */
static char *read_line(const char *prompt, int *status)
{
	struct sigaction old[NSIGNALS];
	bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved_tty) == 0;
	char *line = sodium_malloc(PASSWORD_CAP);
	*status = CTL_FAILED;
	if (line == NULL) {
		fprintf(stderr, "sesamectl: out of memory\n");
		return NULL;
	}
	/* The echo off first: an answer typed once the prompt shows is not flushed with it. */
	if (tty) {
		quiet_tty(old);
		fprintf(stderr, "%s", prompt);
	}
	ssize_t n = read_secret(line, PASSWORD_CAP);
	if (tty)
		loud_tty(old);
	if (n >= 0)
		return line;
	if (n == -1)
		fprintf(stderr, "sesamectl: no password on standard input\n");
	else
		fprintf(stderr, "sesamectl: the password is longer than %d bytes\n",
			PASSWORD_CAP - 1);
	*status = n == -1 ? CTL_FAILED : CTL_REFUSED;
	sodium_free(line);
	return NULL;
}

/* The new password: asked twice on a terminal (both must match), else one line of input. */
static char *read_password(int *status)
{
	char *pw = read_line("New password: ", status), *again = NULL;
	if (pw == NULL || !isatty(STDIN_FILENO))
		return pw;
	again = read_line("Retype the new password: ", status);
	bool same = again != NULL && strcmp(pw, again) == 0;
	sodium_free(again);
	if (same)
		return pw;
	fprintf(stderr, "sesamectl: the passwords do not match\n");
	sodium_free(pw);
	*status = CTL_REFUSED;
	return NULL;
}

/* ---- validation and hashing, as POST /users/register does them ---- */

/*
 * The normal form of value in out, as sesame.validate gives it (the password: the password
 * policy, blocklist included); else CTL_REFUSED with the validator's message.
 */
static int validate(const struct config *cfg, const char *name, const char *value,
		    const char *const *related, char *out, size_t outlen)
{
	char msg[256] = "";
	int rc = plugins_validate(cfg->plugins, name, value, strlen(value), related, out, outlen,
				  msg, sizeof(msg));
	if (rc == -2) {
		fprintf(stderr, "sesamectl: no validator plugin named '%s' is loaded\n", name);
		return CTL_FAILED;
	}
	if (rc == 1)
		return CTL_OK;
	fprintf(stderr, "sesamectl: %s: %s\n", name,
		rc == 0 && msg[0] != '\0' ? msg : "invalid value");
	return CTL_REFUSED;
}

/* Reads, checks and hashes a new password for email and username into hash. */
static int new_password_hash(const struct config *cfg, const char *email, const char *username,
			     char *hash, size_t hashlen)
{
	const struct hasher *h = plugins_scheme(cfg->plugins);
	const char *related[] = {email, username, NULL};
	int status;
	char *pw = read_password(&status);
	if (pw == NULL)
		return status;
	size_t len = strlen(pw);
	char *normal = sodium_malloc(len * 4 + 64);
	status = normal == NULL ? CTL_FAILED
				: validate(cfg, "password", pw, related, normal, len * 4 + 64);
	sodium_free(normal);
	if (status == CTL_OK && (h == NULL || h->fn->hash(h->state, pw, len, hash, hashlen) != 0)) {
		fprintf(stderr, "sesamectl: the password cannot be hashed\n");
		status = CTL_FAILED;
	}
	sodium_free(pw);
	return status;
}

/* ---- storage ---- */

static int storage_failed(enum sesame_storage_result r, const char *err)
{
	fprintf(stderr, "sesamectl: storage: %s\n", err[0] != '\0' ? err : "failed");
	return r == SESAME_STORAGE_NOT_FOUND ? CTL_NOT_FOUND : CTL_FAILED;
}

/* Finds the user whose e-mail is email (in its normal form) into uc->user. */
static int find_user(struct user_ctx *uc, const char *email)
{
	char normal[1100], err[LOG_ERR_MAX] = "";
	if (strlen(email) > 254 ||
	    validate(uc->cfg, "email", email, NULL, normal, sizeof(normal)) != CTL_OK) {
		fprintf(stderr, "sesamectl: no user has the e-mail address %s\n", email);
		return CTL_NOT_FOUND;
	}
	enum sesame_storage_result r = uc->st.fn->user_find(
	    uc->st.state, "email", normal, &uc->user, uc->buf, sizeof(uc->buf), err, sizeof(err));
	if (r == SESAME_STORAGE_NOT_FOUND) {
		fprintf(stderr, "sesamectl: no user has the e-mail address %s\n", normal);
		return CTL_NOT_FOUND;
	}
	if (r != SESAME_STORAGE_OK)
		return storage_failed(r, err);
	snprintf(uc->subject, sizeof(uc->subject), "%lld", uc->user.id);
	return CTL_OK;
}

static void count_family(void *ctx, const char *id)
{
	(*(unsigned long *)ctx)++;
}

/* Every refresh family of the user revoked: it is logged out everywhere. */
static int log_out_everywhere(struct user_ctx *uc)
{
	char err[LOG_ERR_MAX] = "";
	unsigned long n = 0;
	long long until = tokens_family_revoke_until(&uc->cfg->jwt, clock_wall_ms() / 1000);
	enum sesame_storage_result r = uc->st.fn->subject_revoke(
	    uc->st.state, uc->subject, NULL, until, count_family, &n, err, sizeof(err));
	if (r != SESAME_STORAGE_OK)
		return storage_failed(r, err);
	printf("sesamectl: user %lld logged out everywhere (%lu %s revoked)\n", uc->user.id, n,
	       n == 1 ? "session" : "sessions");
	return CTL_OK;
}

/* The event of what was done to the user: to the audit log and, with events.store, stored. */
static void emit(const struct user_ctx *uc, const char *name)
{
	json_t *ev = events_new(name);
	if (ev == NULL)
		return;
	json_object_set_new(ev, "user", json_integer(uc->user.id));
	json_object_set_new(ev, "email", json_string(uc->user.email));
	json_object_set_new(ev, "by", json_string("sesamectl"));
	events_emit(ev);
	json_decref(ev);
}

/* ---- the commands ---- */

static int user_add(struct user_ctx *uc, const struct user_opts *o)
{
	char email[1100], username[1100], hash[512], err[LOG_ERR_MAX] = "";
	char local[256];
	const char *name = o->username;
	int status = validate(uc->cfg, "email", o->args[0], NULL, email, sizeof(email));
	if (status != CTL_OK)
		return status;
	if (name == NULL) { /* the address's local part, as the username validator takes it */
		snprintf(local, sizeof(local), "%.*s", (int)strcspn(email, "@"), email);
		name = local;
	}
	status = validate(uc->cfg, "username", name, NULL, username, sizeof(username));
	if (status == CTL_OK)
		status = new_password_hash(uc->cfg, email, username, hash, sizeof(hash));
	if (status != CTL_OK)
		return status;
	struct sesame_user u = {.email = email, .username = username, .password = hash};
	long long id = 0;
	enum sesame_storage_result r =
	    uc->st.fn->user_create(uc->st.state, &u, &id, err, sizeof(err));
	sodium_memzero(hash, sizeof(hash));
	if (r == SESAME_STORAGE_CONFLICT) {
		fprintf(stderr, "sesamectl: %s is already registered\n", email);
		return CTL_REFUSED;
	}
	if (r != SESAME_STORAGE_OK)
		return storage_failed(r, err);
	printf("sesamectl: added user %lld (%s, %s)\n", id, email, username);
	uc->user = (struct sesame_user){.id = id, .email = email};
	emit(uc, "registered");
	uc->user = (struct sesame_user){0}; /* email is this function's */
	return CTL_OK;
}

static int user_passwd(struct user_ctx *uc, const struct user_opts *o)
{
	char hash[512], err[LOG_ERR_MAX] = "";
	int status = find_user(uc, o->args[0]);
	if (status == CTL_OK)
		status = new_password_hash(uc->cfg, uc->user.email, uc->user.username, hash,
					   sizeof(hash));
	if (status != CTL_OK)
		return status;
	enum sesame_storage_result r =
	    uc->st.fn->user_set_password(uc->st.state, uc->user.id, hash, err, sizeof(err));
	sodium_memzero(hash, sizeof(hash));
	if (r != SESAME_STORAGE_OK)
		return storage_failed(r, err);
	printf("sesamectl: new password set for user %lld (%s)\n", uc->user.id, uc->user.email);
	emit(uc, "password_changed");
	return log_out_everywhere(uc);
}

static int user_set_disabled(struct user_ctx *uc, const struct user_opts *o, bool disabled)
{
	char err[LOG_ERR_MAX] = "";
	int status = find_user(uc, o->args[0]);
	if (status != CTL_OK)
		return status;
	enum sesame_storage_result r =
	    uc->st.fn->user_set_disabled(uc->st.state, uc->user.id, disabled, err, sizeof(err));
	if (r != SESAME_STORAGE_OK)
		return storage_failed(r, err);
	printf("sesamectl: user %lld (%s) %s\n", uc->user.id, uc->user.email,
	       disabled ? "disabled" : "enabled");
	emit(uc, disabled ? "disabled" : "enabled");
	return disabled ? log_out_everywhere(uc) : CTL_OK;
}

/* A deletion is confirmed with --yes, or by typing yes on a terminal. */
static bool confirmed(const struct user_ctx *uc, const struct user_opts *o)
{
	if (o->yes)
		return true;
	if (!isatty(STDIN_FILENO)) {
		fprintf(stderr, "sesamectl: not deleting without --yes: standard input is not a "
				"terminal to confirm on\n");
		return false;
	}
	fprintf(stderr, "Delete user %lld (%s) and every session of it? Type yes: ", uc->user.id,
		uc->user.email);
	char *line = NULL;
	size_t cap = 0;
	bool yes = getline(&line, &cap, stdin) > 0 && strcmp(line, "yes\n") == 0;
	free(line);
	if (!yes)
		fprintf(stderr, "sesamectl: not deleted\n");
	return yes;
}

static int user_delete(struct user_ctx *uc, const struct user_opts *o)
{
	char err[LOG_ERR_MAX] = "";
	int status = find_user(uc, o->args[0]);
	if (status != CTL_OK)
		return status;
	if (!confirmed(uc, o))
		return CTL_REFUSED;
	long long until = tokens_family_revoke_until(&uc->cfg->jwt, clock_wall_ms() / 1000);
	enum sesame_storage_result r = uc->st.fn->user_delete(
	    uc->st.state, uc->user.id, uc->subject, uc->user.email, until, err, sizeof(err));
	if (r != SESAME_STORAGE_OK)
		return storage_failed(r, err);
	printf("sesamectl: deleted user %lld (%s) and its sessions\n", uc->user.id, uc->user.email);
	emit(uc, "deleted");
	return CTL_OK;
}

/* ---- list and show ---- */

struct listing {
	json_t *rows;
	bool oom;
};

static void collect_user(void *ctx, const struct sesame_user *u, const char *created,
			 long long disabled_at)
{
	struct listing *l = ctx;
	/* Another application's table may leave a column NULL: "" here, as MariaDB's reads it. */
	json_t *row = json_pack(
	    "{sI ss ss so? sb so?}", "id", (json_int_t)u->id, "email",
	    u->email != NULL ? u->email : "", "username", u->username != NULL ? u->username : "",
	    "created", created != NULL ? json_string(created) : NULL, "disabled", disabled_at != 0,
	    "disabled_at", disabled_at != 0 ? json_integer(disabled_at) : NULL);
	if (row == NULL || json_array_append_new(l->rows, row) != 0)
		l->oom = true;
}

static void utc(long long t, char *out, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;
	if (t == 0 || gmtime_r(&tt, &tm) == NULL)
		snprintf(out, len, "-");
	else
		strftime(out, len, "%Y-%m-%d %H:%M:%S", &tm);
}

static void print_table(json_t *rows)
{
	size_t i;
	json_t *row;
	printf("%-8s %-32s %-20s %-19s %s\n", "ID", "EMAIL", "USERNAME", "CREATED", "DISABLED");
	json_array_foreach (rows, i, row) {
		char since[32];
		json_t *created = json_object_get(row, "created");
		utc(json_integer_value(json_object_get(row, "disabled_at")), since, sizeof(since));
		printf("%-8lld %-32s %-20s %-19s %s\n",
		       (long long)json_integer_value(json_object_get(row, "id")),
		       json_string_value(json_object_get(row, "email")),
		       json_string_value(json_object_get(row, "username")),
		       json_is_string(created) ? json_string_value(created) : "-", since);
	}
}

static void print_json(json_t *doc)
{
	char *text = json_dumps(doc, JSON_COMPACT | JSON_ENSURE_ASCII);
	if (text != NULL)
		printf("%s\n", text);
	free(text);
}

/* Users after after, at most limit of them, into l->rows. */
static int list_into(struct user_ctx *uc, long long after, long long limit, struct listing *l)
{
	char err[LOG_ERR_MAX] = "";
	l->rows = json_array();
	l->oom = l->rows == NULL;
	enum sesame_storage_result r =
	    l->oom ? SESAME_STORAGE_FAILED
		   : uc->st.fn->user_list(uc->st.state, after, limit, collect_user, l, err,
					  sizeof(err));
	if (r == SESAME_STORAGE_OK && l->oom)
		snprintf(err, sizeof(err), "out of memory");
	return r == SESAME_STORAGE_OK && !l->oom ? CTL_OK : storage_failed(r, err);
}

static int user_list(struct user_ctx *uc, const struct user_opts *o)
{
	struct listing l;
	int status = list_into(uc, o->after, o->limit, &l);
	if (status == CTL_OK && o->json)
		print_json(l.rows);
	else if (status == CTL_OK)
		print_table(l.rows);
	json_decref(l.rows);
	return status;
}

static int user_show(struct user_ctx *uc, const struct user_opts *o)
{
	struct listing l = {0};
	int status = find_user(uc, o->args[0]);
	if (status == CTL_OK)
		status = list_into(uc, uc->user.id - 1, 1, &l);
	json_t *row = status == CTL_OK ? json_array_get(l.rows, 0) : NULL;
	if (status == CTL_OK && row == NULL) { /* deleted meanwhile */
		fprintf(stderr, "sesamectl: no user has the e-mail address %s\n", o->args[0]);
		status = CTL_NOT_FOUND;
	}
	if (row != NULL)
		json_object_set_new(row, "verified", json_boolean(uc->user.verified_at != 0));
	if (row != NULL && o->json) {
		print_json(row);
	} else if (row != NULL) {
		char since[32];
		json_t *created = json_object_get(row, "created");
		utc(json_integer_value(json_object_get(row, "disabled_at")), since, sizeof(since));
		printf("id:       %lld\nemail:    %s\nusername: %s\ncreated:  %s\ndisabled: %s\n",
		       uc->user.id, json_string_value(json_object_get(row, "email")),
		       json_string_value(json_object_get(row, "username")),
		       json_is_string(created) ? json_string_value(created) : "-",
		       json_is_true(json_object_get(row, "disabled")) ? since : "no");
		utc(uc->user.verified_at, since, sizeof(since));
		printf("verified: %s\n", uc->user.verified_at != 0 ? since : "no");
	}
	json_decref(l.rows);
	return status;
}

/* ---- dispatch ---- */

struct user_command {
	const char *name;
	int nargs; /* positional arguments */
	int (*run)(struct user_ctx *uc, const struct user_opts *o);
	bool emits; /* an event: the audit log is opened for it */
};

static int user_disable(struct user_ctx *uc, const struct user_opts *o)
{
	return user_set_disabled(uc, o, true);
}

static int user_enable(struct user_ctx *uc, const struct user_opts *o)
{
	return user_set_disabled(uc, o, false);
}

/* An operator's fix: the user's address marked verified, as the confirmation link does. */
static int user_verify(struct user_ctx *uc, const struct user_opts *o)
{
	char err[LOG_ERR_MAX] = "";
	int status = find_user(uc, o->args[0]);
	if (status != CTL_OK)
		return status;
	if (uc->st.fn->user_set_verified == NULL) {
		fprintf(stderr, "sesamectl: storage backend %s lacks user_set_verified (ABI 1.1)\n",
			uc->st.fn->header.name);
		return CTL_FAILED;
	}
	enum sesame_storage_result r =
	    uc->st.fn->user_set_verified(uc->st.state, uc->user.id, true, err, sizeof(err));
	if (r != SESAME_STORAGE_OK)
		return storage_failed(r, err);
	printf("sesamectl: user %lld (%s) verified\n", uc->user.id, uc->user.email);
	emit(uc, "verified");
	return CTL_OK;
}

static const struct user_command commands[] = {
    {"add", 1, user_add, true},
    {"passwd", 1, user_passwd, true},
    {"disable", 1, user_disable, true},
    {"enable", 1, user_enable, true},
    {"delete", 1, user_delete, true},
    {"list", 0, user_list, false},
    {"show", 1, user_show, false},
    {"verify", 1, user_verify, true},
    {NULL, 0, NULL, false},
};

int ctl_user(const char *path, int argc, char **argv)
{
	struct user_opts o;
	const struct user_command *cmd = commands;
	if (argc < 2)
		return user_usage();
	while (cmd->name != NULL && strcmp(cmd->name, argv[1]) != 0)
		cmd++;
	if (cmd->name == NULL || parse_opts(argc - 1, argv + 1, &o) != 0 || o.nargs != cmd->nargs)
		return user_usage();
	/* Unbuffered: what stdio reads (a confirmation) takes no more than its line. */
	setvbuf(stdin, NULL, _IONBF, 0);
	struct user_ctx *uc = calloc(1, sizeof(*uc));
	if (uc == NULL)
		return CTL_FAILED;
	uc->cfg = ctl_storage_open(path, &uc->st, cmd->emits);
	int status = uc->cfg != NULL ? cmd->run(uc, &o) : CTL_FAILED;
	if (uc->cfg != NULL)
		ctl_storage_close(uc->cfg);
	sodium_memzero(uc->buf, sizeof(uc->buf));
	free(uc);
	return status;
}
