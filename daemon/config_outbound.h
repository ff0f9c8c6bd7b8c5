/* config_outbound.h: the mail and http sections of the configuration (outbound transfers). */
#ifndef SESAME_CONFIG_OUTBOUND_H
#define SESAME_CONFIG_OUTBOUND_H

#include <stdbool.h>
#include <stddef.h>

#include "config_table.h"

/* mail = { url, from, username, password_file, timeout, tls, ca_file }: absent, mail is off. */
struct config_mail {
	bool configured;
	char *url;	/* smtp://HOST:PORT or smtps://HOST:PORT */
	char *from;	/* one plain address */
	char *username; /* SMTP AUTH, with the password */
	char *password; /* read from password_file at load; wiped when freed, never logged */
	size_t password_len;
	long timeout_ms; /* the whole transfer, connecting included */
	int tls;	 /* CURLUSESSL_TRY ("try", the default), CURLUSESSL_ALL ("require"), NONE */
	char *ca;	 /* ca_file's PEM text, the only CAs trusted; NULL: the system's */
	size_t ca_len;
	bool verify; /* check the server's certificate: off only for "try" on loopback */
};

/* One entry of http.allow: a host (lower case) and a port, 0 for the scheme's default. */
struct config_http_host {
	char *host; /* a name or an IPv4 address, or an IPv6 one in brackets, as curl gives it */
	long port;
};

/* http = { allow, timeout, max_response } */
struct config_http {
	struct config_http_host *allow; /* empty: no outbound HTTP */
	size_t nallow;
	long timeout_ms;
	size_t max_response; /* bytes of a response body */
};

/* The kinds of the top level's mail and http keys. */
config_kind config_mail_read, config_http_read;

void config_outbound_clear(struct config_mail *mail, struct config_http *http);

/*
 * Whether s is one plain address: local@domain, no display name, no list, no space, quote,
 * bracket or control character, at most 254 bytes.
 */
bool config_outbound_address(const char *s);

/*
 * Whether url's host is this machine's loopback (127.0.0.0/8, ::1, localhost); when smtps
 * is not NULL, *smtps says whether its scheme is smtps. False for a URL that cannot be parsed.
 */
bool config_outbound_loopback_url(const char *url, bool *smtps);

#endif
