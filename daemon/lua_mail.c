/*
 * lua_mail.c: sesame.mail.send{to, subject, text[, html][, reply_to]} and sesame.mail.enabled.
 *
 * The message is composed here, on the loop, as RFC 5322 wants it: From (mail.from), To, an
 * optional Reply-To, a Subject in RFC 2047 encoded words when it is not plain ASCII, Date, a
 * Message-ID with a random part, and a text/plain body in quoted-printable (with html, a
 * multipart/alternative of both). A header value holding CR, LF or NUL, or an address that is
 * not one plain address, raises: a script's mistake never reaches the server. The message is
 * then sent over SMTP by an outbound transfer (outbound.c) while the caller yields: STARTTLS as
 * mail.tls says, the server's certificate checked as config_outbound.c decided (against
 * mail.ca_file's CAs alone when set), SMTP AUTH with mail.username and the password file, all
 * of it bounded by mail.timeout. Any failure answers nil, "mail server unavailable"; the log says
 * which failure, never the message.
 */
#include "autoconfig.h"

#include <curl/curl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "lua_private.h"
#include "outbound.h"

#define SUBJECT_MAX 900 /* bytes: a header line stays under RFC 5322's 998 */
#define QP_LINE	    76
#define WORD_BYTES  45 /* of UTF-8 per encoded word: 60 characters of base64 */
#define UNAVAILABLE "mail server unavailable"

struct mail_job {
	struct luaapi_job lj;
	struct outbound_transfer t;
	struct curl_slist *rcpt;
	char *message;
	size_t len, sent;
	char err[CURL_ERROR_SIZE];
};

/* ---- composing ---- */

/* The string field name of the table at 1; NULL when absent and optional, else raises. */
static const char *field(lua_State *L, const char *name, bool required, size_t *len)
{
	return luaapi_string_field(L, 1, name, required, len, "sesame.mail.send");
}

/* A header value: no CR, LF or NUL, which would end the header or the string early. */
static const char *header_value(lua_State *L, const char *name, size_t *len)
{
	const char *v = field(L, name, true, len);
	if (strlen(v) != *len || strpbrk(v, "\r\n") != NULL)
		luaL_error(L, "sesame.mail.send: %s holds CR, LF or NUL", name);
	return v;
}

static const char *address(lua_State *L, const char *name, bool required)
{
	size_t len = 0;
	const char *v = field(L, name, required, &len);
	if (v != NULL && (strlen(v) != len || !config_outbound_address(v)))
		luaL_error(L, "sesame.mail.send: %s must be one plain address (local@domain)",
			   name);
	return v;
}

static bool plain_ascii(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (s[i] < ' ' || s[i] > '~')
			return false;
	}
	return strstr(s, "=?") == NULL;
}

/* Subject: as it is when plain ASCII, else RFC 2047 words, never splitting a character. */
static void add_subject(luaL_Buffer *b, const char *s, size_t len)
{
	luaL_addstring(b, "Subject: ");
	if (plain_ascii(s, len)) {
		luaL_addlstring(b, s, len);
		luaL_addstring(b, "\r\n");
		return;
	}
	for (size_t i = 0; i < len;) {
		size_t n = len - i < WORD_BYTES ? len - i : WORD_BYTES;
		while (i + n < len && n > 1 && ((unsigned char)s[i + n] & 0xc0) == 0x80)
			n--;
		char word[sodium_base64_ENCODED_LEN(WORD_BYTES, sodium_base64_VARIANT_ORIGINAL)];
		sodium_bin2base64(word, sizeof(word), (const unsigned char *)s + i, n,
				  sodium_base64_VARIANT_ORIGINAL);
		luaL_addstring(b, i > 0 ? "\r\n =?UTF-8?B?" : "=?UTF-8?B?");
		luaL_addstring(b, word);
		luaL_addstring(b, "?=");
		i += n;
	}
	luaL_addstring(b, "\r\n");
}

/* One byte of a quoted-printable line: literal when it may be, =XX otherwise. */
static void qp_byte(luaL_Buffer *b, unsigned char c, bool line_end, size_t *col)
{
	char out[4];
	bool literal = (c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !line_end);
	if (literal)
		snprintf(out, sizeof(out), "%c", c);
	else
		snprintf(out, sizeof(out), "=%02X", c);
	size_t n = strlen(out);
	if (*col + n > QP_LINE - 1) {
		luaL_addstring(b, "=\r\n");
		*col = 0;
	}
	luaL_addlstring(b, out, n);
	*col += n;
}

/* The body in quoted-printable, its line ends CRLF whatever the script used. */
static void add_qp(luaL_Buffer *b, const char *s, size_t len)
{
	size_t col = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\r' && i + 1 < len && s[i + 1] == '\n')
			continue;
		if (s[i] == '\n') {
			luaL_addstring(b, "\r\n");
			col = 0;
			continue;
		}
		bool line_end = i + 1 == len || s[i + 1] == '\n' || s[i + 1] == '\r';
		qp_byte(b, (unsigned char)s[i], line_end, &col);
	}
	luaL_addstring(b, "\r\n");
}

static void add_part(luaL_Buffer *b, const char *type, const char *s, size_t len)
{
	luaL_addstring(b, "Content-Type: ");
	luaL_addstring(b, type);
	luaL_addstring(b, "; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n");
	add_qp(b, s, len);
}

/* Date, in RFC 5322's form, in UTC, whatever the locale. */
static void add_date(luaL_Buffer *b)
{
	static const char days[][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char months[][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	time_t now = (time_t)(clock_wall_ms() / 1000);
	struct tm tm;
	char line[64];
	gmtime_r(&now, &tm);
	snprintf(line, sizeof(line), "Date: %s, %02d %s %d %02d:%02d:%02d +0000\r\n",
		 days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
		 tm.tm_min, tm.tm_sec);
	luaL_addstring(b, line);
}

static void random_hex(char *out, size_t size)
{
	unsigned char bytes[16];
	randombytes_buf(bytes, sizeof(bytes));
	sodium_bin2hex(out, size, bytes, sizeof(bytes));
}

static void add_header(luaL_Buffer *b, const char *name, const char *value)
{
	luaL_addstring(b, name);
	luaL_addstring(b, ": ");
	luaL_addstring(b, value);
	luaL_addstring(b, "\r\n");
}

/* The whole message, from the arguments' table at 1, pushed as a string. */
static void compose(lua_State *L, const char *from, const char *to)
{
	size_t slen = 0, tlen = 0, hlen = 0;
	const char *reply_to = address(L, "reply_to", false);
	const char *subject = header_value(L, "subject", &slen);
	const char *text = field(L, "text", true, &tlen);
	const char *html = field(L, "html", false, &hlen);
	char id[33], boundary[33];
	if (slen > SUBJECT_MAX)
		luaL_error(L, "sesame.mail.send: subject is longer than %d bytes", SUBJECT_MAX);
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	add_date(&b);
	add_header(&b, "From", from);
	add_header(&b, "To", to);
	if (reply_to != NULL)
		add_header(&b, "Reply-To", reply_to);
	add_subject(&b, subject, slen);
	random_hex(id, sizeof(id));
	lua_pushfstring(L, "Message-ID: <%s@%s>\r\n", id, strchr(from, '@') + 1);
	luaL_addvalue(&b);
	add_header(&b, "MIME-Version", "1.0");
	if (html == NULL) {
		add_part(&b, "text/plain", text, tlen);
	} else {
		random_hex(boundary, sizeof(boundary));
		lua_pushfstring(L,
				"Content-Type: multipart/alternative; boundary=\"=_%s\"\r\n\r\n"
				"--=_%s\r\n",
				boundary, boundary);
		luaL_addvalue(&b);
		add_part(&b, "text/plain", text, tlen);
		lua_pushfstring(L, "--=_%s\r\n", boundary);
		luaL_addvalue(&b);
		add_part(&b, "text/html", html, hlen);
		lua_pushfstring(L, "--=_%s--\r\n", boundary);
		luaL_addvalue(&b);
	}
	luaL_pushresult(&b);
}

/* ---- sending ---- */

static size_t read_message(char *buf, size_t size, size_t nitems, void *arg)
{
	struct mail_job *mj = arg;
	size_t n = mj->len - mj->sent < size * nitems ? mj->len - mj->sent : size * nitems;
	memcpy(buf, mj->message + mj->sent, n);
	mj->sent += n;
	return n;
}

static void mail_transfer_done(struct outbound_transfer *t)
{
	struct mail_job *mj = (struct mail_job *)((char *)t - offsetof(struct mail_job, t));
	mj->lj.job.done(&mj->lj.job);
}

/* The request timed out or its client left: the mail may or may not have gone. */
static void mail_cancel(struct luaapi_job *lj)
{
	log_warn("mail: transfer cancelled before the server confirmed it");
	outbound_cancel(&((struct mail_job *)lj)->t);
}

static int mail_push(struct luaapi_job *lj, lua_State *co)
{
	struct mail_job *mj = (struct mail_job *)lj;
	if (mj->t.result == CURLE_OK) {
		lua_pushboolean(co, 1);
		return 1;
	}
	long code = 0;
	curl_easy_getinfo(mj->t.easy, CURLINFO_RESPONSE_CODE, &code);
	if (code >= 400)
		log_error("mail not sent: the server answered %ld (%s)", code,
			  mj->err[0] ? mj->err : outbound_failure(mj->t.result));
	else
		log_error("mail not sent: %s (%s)", outbound_failure(mj->t.result),
			  mj->err[0] ? mj->err : "no detail");
	lua_pushnil(co);
	lua_pushliteral(co, UNAVAILABLE);
	return 2;
}

static void mail_release(struct luaapi_job *lj)
{
	struct mail_job *mj = (struct mail_job *)lj;
	if (mj->t.easy != NULL)
		curl_easy_cleanup(mj->t.easy);
	curl_slist_free_all(mj->rcpt);
	/* It may carry a one-time link: no copy is left in freed memory. */
	if (mj->message != NULL)
		sodium_memzero(mj->message, mj->len);
	free(mj->message);
	free(mj);
}

/* Whom the transfer e trusts: mail.ca_file's CAs alone, the system's, or (see cfg->verify) no
 * check. */
static void set_trust(CURL *e, const struct config_mail *cfg)
{
	if (cfg->ca != NULL) {
		struct curl_blob ca = {
		    .data = cfg->ca, .len = cfg->ca_len, .flags = CURL_BLOB_COPY};
		curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &ca);
		curl_easy_setopt(e, CURLOPT_CAPATH, (char *)NULL);
	}
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, cfg->verify ? 1L : 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, cfg->verify ? 2L : 0L);
}

/* The transfer of the message at the top of the stack to `to`; NULL when out of memory. */
static struct mail_job *new_mail(lua_State *L, const struct config_mail *cfg, const char *to)
{
	size_t len = 0;
	const char *msg = lua_tolstring(L, -1, &len);
	char rcpt[300];
	struct mail_job *mj = calloc(1, sizeof(*mj));
	if (mj == NULL)
		return NULL;
	snprintf(rcpt, sizeof(rcpt), "<%s>", to);
	mj->len = len;
	mj->message = malloc(len);
	mj->rcpt = curl_slist_append(NULL, rcpt);
	mj->t.easy = curl_easy_init();
	if (mj->message == NULL || mj->rcpt == NULL || mj->t.easy == NULL) {
		mail_release(&mj->lj);
		return NULL;
	}
	memcpy(mj->message, msg, len);
	CURL *e = mj->t.easy;
	char from[300];
	snprintf(from, sizeof(from), "<%s>", cfg->from);
	curl_easy_setopt(e, CURLOPT_URL, cfg->url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
	curl_easy_setopt(e, CURLOPT_PROXY, "");
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_MAIL_FROM, from);
	curl_easy_setopt(e, CURLOPT_MAIL_RCPT, mj->rcpt);
	curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(e, CURLOPT_READFUNCTION, read_message);
	curl_easy_setopt(e, CURLOPT_READDATA, mj);
	curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)mj->len);
	curl_easy_setopt(e, CURLOPT_USE_SSL, (long)cfg->tls);
	set_trust(e, cfg);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, cfg->timeout_ms);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, cfg->timeout_ms);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, mj->err);
	if (cfg->username != NULL) {
		curl_easy_setopt(e, CURLOPT_USERNAME, cfg->username);
		curl_easy_setopt(e, CURLOPT_PASSWORD, cfg->password);
	}
	mj->t.done = mail_transfer_done;
	mj->lj.push = mail_push;
	mj->lj.release = mail_release;
	return mj;
}

/* sesame.mail.send{to =, subject =, text = [, html =][, reply_to =]}: true, or nil, message. */
static int l_send(lua_State *L)
{
	struct luaapi *api = luaapi_get(L);
	const struct config_mail *cfg = &api->cfg->mail;
	if (!cfg->configured)
		return luaL_error(L, "sesame.mail.send: mail is not configured (the mail table)");
	luaL_checktype(L, 1, LUA_TTABLE);
	const char *to = address(L, "to", true);
	compose(L, cfg->from, to);
	struct outbound *ob = luaapi_outbound(api);
	struct mail_job *mj = ob != NULL ? new_mail(L, cfg, to) : NULL;
	if (mj == NULL)
		return luaL_error(L, "sesame.mail.send: cannot start a transfer: %s",
				  ob == NULL && api->base == NULL ? "not in a worker"
								  : "out of memory");
	if (outbound_start(ob, &mj->t) != 0) {
		mail_release(&mj->lj);
		log_error("mail not sent: the transfer cannot start");
		lua_pushnil(L);
		lua_pushliteral(L, UNAVAILABLE);
		return 2;
	}
	return luaapi_await_external(L, &mj->lj, mail_cancel, "sesame.mail.send");
}

void luaapi_mail_inject(lua_State *L)
{
	lua_newtable(L);
	lua_pushboolean(L, luaapi_get(L)->cfg->mail.configured);
	lua_setfield(L, -2, "enabled");
	lua_pushcfunction(L, l_send);
	lua_setfield(L, -2, "send");
	lua_setfield(L, -2, "mail");
}
