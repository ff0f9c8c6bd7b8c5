/*
 * http_errors.c: evhttp's own error answers, in sesame's JSON envelope.
 *
 * evhttp answers by itself a request it cannot parse (400), too large (413), with a method it
 * does not serve (501) or an expectation it cannot meet (417), with an HTML page, through
 * evhttp_send_error. Those answers get sesame's {"result":"fail","error":...} body, an
 * access-log line and a count in the metrics like every other.
 *
 * On every libevent, this file defines its own evhttp_send_error, which the dynamic linker
 * binds libevent's internal calls to, and sends the answer whole: the status (431 rather than
 * 400 for a head past server.max_header), Content-Type: application/json, Connection: close,
 * and for a HEAD the length of that body without the body. libevent's own function, and with
 * it the error-page callback below, is then never called.
 *
 * A libevent that binds its own calls (linked with -Bsymbolic-functions, or built with LTO)
 * calls its own evhttp_send_error instead. Where configure finds evhttp_set_errorcb (libevent
 * 2.2), the callback still makes the body sesame's JSON; libevent then sets the headers itself
 * (Content-Type: text/html, Connection: close) and keeps its status (400 for a head too large).
 * Without that callback (2.1), the page is libevent's HTML; http_framing.c warns of it.
 *
 * A head that http_framing.c refused reaches evhttp as a malformed one: its message is asked
 * for there.
 */
#include "autoconfig.h"

#include "http_errors.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "http_framing.h"
#include "log.h"
#include "metrics.h"

#define HTTP_HEADERS_TOO_LARGE 431

static size_t max_header_size;

char *http_error_body(const char *message, const char *detail, size_t *len)
{
	json_t *o = json_pack("{s:s, s:s}", "result", "fail", "error", message);
	if (o != NULL && detail != NULL)
		json_object_set_new(o, "detail", json_string(detail));
	char *s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	*len = s != NULL ? strlen(s) : 0;
	return s;
}

/* The bytes of the head still unread in, up to its end (an empty line), or all if it has not
 * ended: a body or a request after it is no part of the head's size. */
static size_t head_unread(struct evbuffer *in)
{
	struct evbuffer_ptr at, eol;
	size_t eol_len = 0;
	evbuffer_ptr_set(in, &at, 0, EVBUFFER_PTR_SET);
	for (;;) {
		eol = evbuffer_search_eol(in, &at, &eol_len, EVBUFFER_EOL_CRLF);
		if (eol.pos < 0)
			return evbuffer_get_length(in);
		if (eol.pos == at.pos)
			return (size_t)eol.pos + eol_len;
		evbuffer_ptr_set(in, &at, (size_t)eol.pos + eol_len, EVBUFFER_PTR_SET);
	}
}

/* evhttp gave up on req's head: did it pass max_header, with what is still unread of it? */
static bool head_too_large(struct evhttp_request *req)
{
	struct evhttp_connection *conn = evhttp_request_get_connection(req);
	if (conn == NULL || max_header_size == 0)
		return false;
	struct evbuffer *in = bufferevent_get_input(evhttp_connection_get_bufferevent(conn));
	return req->headers_size + head_unread(in) > max_header_size;
}

/* The client's message for evhttp's error, and the status it deserves. */
static const char *message_for(struct evhttp_request *req, int *status)
{
	const char *why;
	if (http_framing_refused(req, &why)) {
		*status = HTTP_BADREQUEST;
		return why;
	}
	switch (*status) {
	case HTTP_ENTITYTOOLARGE:
		return "request too large";
	case HTTP_NOTIMPLEMENTED:
		return "method not implemented";
	case HTTP_SERVUNAVAIL:
		return "service unavailable";
	case HTTP_INTERNAL:
		return "internal server error";
	case HTTP_EXPECTATIONFAILED:
		return "expectation failed";
	case HTTP_BADREQUEST:
		if (!head_too_large(req))
			break;
		*status = HTTP_HEADERS_TOO_LARGE;
		return "request headers too large";
	}
	return "malformed request";
}

/* The access-log line and the count of an answer to a request that never reached a route. */
static void account(struct evhttp_request *req, int status)
{
	const char *method = http_method_name(evhttp_request_get_command(req));
	char remote[64];
	http_peer_address(req, remote, sizeof(remote));
	struct access_entry e = {
	    .method = method, .path = "-", .status = status, .remote = remote, .request_id = "-"};
	accesslog_write(&e);
	metrics_request_unparsed(method, status);
}

#ifdef HAVE_EVHTTP_SET_ERRORCB
/* libevent's evhttp_send_error is answering, not ours: see the comment at the top. */
static int on_error_page(struct evhttp_request *req, struct evbuffer *page, int error,
			 const char *reason, void *arg)
{
	size_t len;
	int status = error; /* libevent sends its own */
	const char *message = message_for(req, &status);
	account(req, error);
	/* libevent writes the page even after a HEAD; the connection closes after it. */
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD)
		return 0;
	char *body = http_error_body(message, NULL, &len);
	if (body == NULL)
		return -1;
	evbuffer_add(page, body, len);
	free(body);
	return 0;
}
#endif

void http_errors_install(struct evhttp *http, size_t max_header)
{
	max_header_size = max_header;
#ifdef HAVE_EVHTTP_SET_ERRORCB
	evhttp_set_errorcb(http, on_error_page, NULL);
#endif
}

/* Replaces libevent's own HTML error page (see the comment at the top). */
void evhttp_send_error(struct evhttp_request *req, int error, const char *reason)
{
	int status = error;
	const char *message = message_for(req, &status);
	if (status == HTTP_HEADERS_TOO_LARGE)
		reason = "Request Header Fields Too Large";
	/* A request line that did not parse leaves no version: answer as HTTP/1.1, as libevent
	 * does. */
	if (req->major == 0 && req->minor == 0) {
		req->major = 1;
		req->minor = 1;
	}
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	evhttp_clear_headers(out);
	evhttp_add_header(out, "Content-Type", "application/json");
	evhttp_add_header(out, "Connection", "close");
	size_t len;
	char *body = http_error_body(message, NULL, &len);
	struct evbuffer *buf = evbuffer_new();
	if (!http_head_only(req, status, body != NULL ? len : 0) && buf != NULL && body != NULL)
		evbuffer_add(buf, body, len);
	/* req may be freed by the send: it is accounted for before. */
	account(req, status);
	evhttp_send_reply(req, status, reason, buf);
	if (buf != NULL)
		evbuffer_free(buf);
	free(body);
}
