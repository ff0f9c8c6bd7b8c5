/*
 * config_outbound.c: reads the mail and http sections: where sesame.mail.send delivers, and
 * which hosts sesame.http.request may reach.
 *
 * mail: an smtp:// or smtps:// URL, a From address, optional SMTP AUTH (the password read from
 * its file now, once, wiped when the configuration is freed, never shown in a message), a
 * timeout and the STARTTLS policy; AUTH to a server off loopback must use TLS. The server's
 * certificate is checked against ca_file (read now, so a worker needs no access to it) or
 * the system's CAs; only opportunistic STARTTLS ("try") to a loopback server skips the check,
 * as nobody can be in the middle there and local MTAs offer self-signed certificates. Without
 * a mail table mail is off. http: the allow list, "HOST" or "HOST:PORT" entries (a host alone
 * allows the scheme's default port only), a timeout and the largest response body. Unset, each
 * section is read as an empty table, so that every key keeps (and lists) its default.
 */
#include "autoconfig.h"

#include "config_outbound.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <lua.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "file.h"

#define DEFAULT_TIMEOUT_MS   10000
#define DEFAULT_MAX_RESPONSE (1u << 20)

bool config_outbound_address(const char *s)
{
	const char *at = strchr(s, '@');
	size_t len = strlen(s);
	if (at == NULL || at == s || at[1] == '\0' || strchr(at + 1, '@') != NULL || len > 254)
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p <= ' ' || *p == 0x7f || strchr("<>()[],;:\"\\", *p) != NULL)
			return false;
	}
	return at[1] != '.' && s[len - 1] != '.';
}

static struct config_mail *mail_of(const struct config_reader *rd)
{
	return rd->base;
}

static void read_url(struct config_reader *rd, int tbl, const struct config_key *key,
		     const char *keypath)
{
	char **url = config_field(rd, key);
	config_read_string(rd, keypath, url);
	if (*url == NULL)
		return;
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL;
	bool ok = u != NULL && curl_url_set(u, CURLUPART_URL, *url, 0) == CURLUE_OK &&
		  curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
		  curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
		  (strcmp(scheme, "smtp") == 0 || strcmp(scheme, "smtps") == 0);
	if (!ok)
		config_fail(rd, keypath,
			    "expected \"smtp://HOST[:PORT]\" or \"smtps://HOST[:PORT]\"");
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
}

static void read_from(struct config_reader *rd, int tbl, const struct config_key *key,
		      const char *keypath)
{
	char **from = config_field(rd, key);
	config_read_string(rd, keypath, from);
	if (*from != NULL && !config_outbound_address(*from))
		config_fail(rd, keypath, "expected one plain address (local@domain), no name");
}

/* The SMTP password, from its file: a trailing newline is the editor's, not the password's. */
static void read_password_file(struct config_reader *rd, int tbl, const struct config_key *key,
			       const char *keypath)
{
	struct config_mail *m = mail_of(rd);
	char *file = NULL;
	config_read_string(rd, keypath, &file);
	if (file == NULL)
		return;
	char *path = file_resolve(rd->dir, file);
	size_t len = 0;
	char *text = path != NULL ? file_read_len(path, &len) : NULL;
	if (text == NULL) {
		config_fail(rd, keypath, "cannot read %s: %s", path != NULL ? path : file,
			    strerror(errno));
	} else if (len != strlen(text)) {
		config_fail(rd, keypath, "%s holds a NUL byte: a password file is text", path);
		file_free_secret(text, len);
	} else {
		while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
			text[--len] = '\0';
		file_free_secret(m->password, m->password_len);
		m->password = text;
		m->password_len = len;
	}
	free(path);
	free(file);
}

/* The CAs to trust for the mail server, a PEM file, read now as the password is. */
static void read_ca_file(struct config_reader *rd, int tbl, const struct config_key *key,
			 const char *keypath)
{
	struct config_mail *m = mail_of(rd);
	char *file = NULL, *path = NULL, *text = NULL;
	size_t len = 0;
	config_read_string(rd, keypath, &file);
	if (file == NULL)
		return;
	path = file_resolve(rd->dir, file);
	text = path != NULL ? file_read_len(path, &len) : NULL;
	if (text == NULL)
		config_fail(rd, keypath, "cannot read %s: %s", path != NULL ? path : file,
			    strerror(errno));
	else if (strstr(text, "-----BEGIN CERTIFICATE-----") == NULL)
		config_fail(rd, keypath, "%s holds no PEM certificate", path);
	else {
		free(m->ca);
		m->ca = text;
		m->ca_len = len;
		text = NULL;
	}
	free(text);
	free(path);
	free(file);
}

static void read_tls(struct config_reader *rd, int tbl, const struct config_key *key,
		     const char *keypath)
{
	int *tls = config_field(rd, key);
	int t = lua_type(rd->L, -1);
	const char *v = t == LUA_TSTRING ? lua_tostring(rd->L, -1) : "";
	if (t == LUA_TBOOLEAN && !lua_toboolean(rd->L, -1))
		*tls = CURLUSESSL_NONE;
	else if (strcmp(v, "try") == 0)
		*tls = CURLUSESSL_TRY;
	else if (strcmp(v, "require") == 0)
		*tls = CURLUSESSL_ALL;
	else if (t != LUA_TNIL)
		config_fail(rd, keypath, "expected \"try\", \"require\" or false");
}

#define MAIL(field) offsetof(struct config_mail, field)
#define HTTP(field) offsetof(struct config_http, field)

static const struct config_key mail_keys[] = {
    {"url", read_url, 0, 0, MAIL(url)},
    {"from", read_from, 0, 0, MAIL(from)},
    {"username", config_string, 0, 0, MAIL(username)},
    {"password_file", read_password_file, 0, 0, 0},
    {"timeout", config_ms, 100, 600000, MAIL(timeout_ms)},
    {"tls", read_tls, 0, 0, MAIL(tls)},
    {"ca_file", read_ca_file, 0, 0, 0},
    {NULL, NULL, 0, 0, 0},
};

/* Whether host (as curl gives it: an IPv6 address in brackets) is this machine's loopback. */
static bool loopback_host(const char *host)
{
	struct in_addr a4;
	if (strcasecmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0)
		return true;
	return inet_pton(AF_INET, host, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

bool config_outbound_loopback_url(const char *url, bool *smtps)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL;
	bool loopback = false;
	if (u != NULL &&
	    curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
		loopback = loopback_host(host);
		if (smtps != NULL)
			*smtps = strcmp(scheme, "smtps") == 0;
	}
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
	return loopback;
}

/* Where the mail server is, read from its URL once: on loopback, and TLS from the start. */
struct mail_server {
	bool loopback, smtps;
};

/*
 * Whether SMTP AUTH can be read by someone in the middle: it can unless TLS is required
 * (smtps://, or STARTTLS with tls = "require"), or the server is on loopback. "try" is not
 * enough: whoever is in the middle strips the server's STARTTLS offer.
 */
static bool auth_in_clear(const struct config_mail *m, struct mail_server at)
{
	return m->tls != CURLUSESSL_ALL && !at.smtps && !at.loopback;
}

/*
 * Whether the server's certificate is checked: always, but for opportunistic STARTTLS to a
 * loopback server with no ca_file. Nobody is in the middle on loopback, and a local MTA's
 * certificate is usually self-signed (Debian's snakeoil): checking it would stop every mail.
 */
static bool verify_server(const struct config_mail *m, struct mail_server at)
{
	return m->ca != NULL || m->tls != CURLUSESSL_TRY || at.smtps || !at.loopback;
}

void config_mail_read(struct config_reader *rd, int top, const struct config_key *key,
		      const char *keypath)
{
	struct config_mail *m = config_field(rd, key);
	m->timeout_ms = DEFAULT_TIMEOUT_MS;
	m->tls = CURLUSESSL_TRY;
	m->verify = true;
	if (!config_section_read(rd, m, keypath, mail_keys))
		return;
	m->configured = true;
	struct mail_server at = {0};
	if (m->url != NULL)
		at.loopback = config_outbound_loopback_url(m->url, &at.smtps);
	if (m->url == NULL || m->from == NULL)
		config_fail(rd, m->url == NULL ? "mail.url" : "mail.from",
			    "mail needs a server (mail.url) and a sender (mail.from)");
	if ((m->username != NULL) != (m->password != NULL))
		config_fail(rd, m->username == NULL ? "mail.username" : "mail.password_file",
			    "SMTP AUTH needs both mail.username and mail.password_file");
	else if (m->username != NULL && m->url != NULL && auth_in_clear(m, at))
		config_fail(rd, "mail.username",
			    "SMTP AUTH to another host needs tls = \"require\" or an smtps:// "
			    "URL: without it the password can go out in clear text (\"try\" "
			    "lets a man in the middle strip STARTTLS)");
	if (m->url != NULL)
		m->verify = verify_server(m, at);
}

/* "HOST" or "HOST:PORT", an IPv6 address in brackets: into e, the host lower-cased. */
static bool parse_host(const char *s, struct config_http_host *e)
{
	const char *colon = s[0] == '[' ? strstr(s, "]:") : strrchr(s, ':');
	size_t hostlen = colon != NULL ? (size_t)(colon - s) + (s[0] == '[') : strlen(s);
	if (colon != NULL) {
		const char *digits = colon + 1 + (s[0] == '[');
		char *end = NULL;
		e->port = strtol(digits, &end, 10);
		if (*digits == '\0' || *end != '\0' || e->port < 1 || e->port > 65535)
			return false;
	}
	if (hostlen == 0 || hostlen > 253)
		return false;
	for (size_t i = 0; i < hostlen; i++) {
		char c = s[i];
		bool v6 = s[0] == '[' && (c == '[' || c == ']' || c == ':');
		if (!(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') && !(c >= '0' && c <= '9') &&
		    c != '-' && c != '.' && !v6)
			return false;
	}
	if (s[0] == '[' && s[hostlen - 1] != ']')
		return false;
	e->host = strndup(s, hostlen);
	for (char *p = e->host; p != NULL && *p != '\0'; p++)
		*p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
	return e->host != NULL;
}

static void read_allow(struct config_reader *rd, int tbl, const struct config_key *key,
		       const char *keypath)
{
	struct config_http *h = rd->base;
	char **entries = NULL;
	size_t n = 0;
	if (lua_isnil(rd->L, -1))
		return;
	config_read_strings(rd, -1, keypath, &entries, &n);
	h->allow = n > 0 ? calloc(n, sizeof(*h->allow)) : NULL;
	for (size_t i = 0; i < n; i++) {
		struct config_http_host e = {0};
		if (h->allow != NULL && parse_host(entries[i], &e))
			h->allow[h->nallow++] = e;
		else
			config_fail(rd, keypath, "%s: expected \"HOST\" or \"HOST:PORT\"",
				    entries[i]);
		free(entries[i]);
	}
	free(entries);
}

static const struct config_key http_keys[] = {
    {"allow", read_allow, 0, 0, 0},
    {"timeout", config_ms, 100, 600000, HTTP(timeout_ms)},
    {"max_response", config_size, 1, 1L << 30, HTTP(max_response)},
    {NULL, NULL, 0, 0, 0},
};

void config_http_read(struct config_reader *rd, int top, const struct config_key *key,
		      const char *keypath)
{
	struct config_http *h = config_field(rd, key);
	h->timeout_ms = DEFAULT_TIMEOUT_MS;
	h->max_response = DEFAULT_MAX_RESPONSE;
	config_section_read(rd, h, keypath, http_keys);
}

void config_outbound_clear(struct config_mail *mail, struct config_http *http)
{
	free(mail->url);
	free(mail->from);
	free(mail->username);
	file_free_secret(mail->password, mail->password_len);
	free(mail->ca);
	memset(mail, 0, sizeof(*mail));
	for (size_t i = 0; i < http->nallow; i++)
		free(http->allow[i].host);
	free(http->allow);
	memset(http, 0, sizeof(*http));
}
