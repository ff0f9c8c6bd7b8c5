/*
 * http_framing.c: strict request framing (RFC 9112 6.3 and 5.1), against request smuggling.
 *
 * evhttp takes a request's length from the first Content-Length or Transfer-Encoding header
 * it finds by name and ignores the others; a proxy in front of sesame may read another one,
 * and then what one side takes for a body the other takes for the next request. So every
 * request head is checked once its headers are in, before its body is read: header names are
 * tokens (no "Content-Length : 5", which evhttp keeps as another name), one Host at most, one
 * Content-Length at most and plain digits, Transfer-Encoding exactly "chunked" and never with
 * a Content-Length nor in HTTP/1.0, no body on a HEAD, a request target without spaces or
 * control characters. A refused head is answered 400 and its connection closed.
 *
 * The check runs in the request's header callback. evhttp closes the connection without an
 * answer when that callback fails, so the callback notes the refusal instead and puts a
 * Content-Length that evhttp itself refuses in front of the head's: evhttp answers 400 with
 * its error page (http_errors.c), which takes the message from http_framing_refused, and
 * closes. A method evhttp reads no body for (HEAD) is handed over whole, and the request
 * callback asks http_framing_verdict.
 *
 * libevent 2.2 calls evhttp_set_newreqcb's callback with each new request, where the header
 * callback is set. 2.1 has no such hook: there, as for the error pages, this file defines
 * evhttp_request_new; the dynamic linker binds libevent's own call to it, and it calls
 * libevent's through dlsym(RTLD_NEXT) before it sets the header callback. A libevent that
 * binds its own calls (-Bsymbolic-functions, LTO) never calls it: the first request then
 * arrives without its head having been checked, and a warning says so once per worker.
 */
#include "autoconfig.h"

#include "http_framing.h"

#include <dlfcn.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/queue.h>

#include "log.h"

/*
 * The refusal evhttp is about to answer: set by the header callback, taken by the answer.
 * Both happen within one call of evhttp's header reading: on_headers returns into evhttp,
 * which at once either fails the request (its error page asks http_framing_refused) or, having
 * no body to read, hands it over whole (on_request asks http_framing_verdict); no other
 * request runs in between. Either question empties the slot, whatever the answer, so that a
 * request freed and another made at the same address can never find a stale refusal.
 */
static struct {
	const struct evhttp_request *req;
	const char *why;
} refusal;

/* A head has reached the header callback: the hook that sets it has taken. */
static bool hooked;

/*
 * The request whose head on_headers last found sound: on_request need not scan it again. A
 * request handed over after another's head was read (several connections) is scanned again;
 * one made at a freed request's address had its own head checked first, which set this.
 */
static const struct evhttp_request *passed;

static int refuse(const char **why, const char *message)
{
	*why = message;
	return 400;
}

/* A token (RFC 9110 5.6.2): what a field name is made of. */
static bool is_token(const char *s)
{
	size_t n = strlen(s);
	return n > 0 && strspn(s, "!#$%&'*+-.^_`|~0123456789"
				  "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") == n;
}

static bool target_ok(const char *target)
{
	if (target == NULL || *target == '\0')
		return false;
	for (const unsigned char *p = (const unsigned char *)target; *p != '\0'; p++) {
		if (*p <= 0x20 || *p == 0x7f)
			return false;
	}
	return true;
}

/* A Content-Length: 1*DIGIT that fits an int64_t, as evhttp stores it; -1 if it is not. */
static int64_t length_value(const char *v)
{
	int64_t n = 0;
	if (*v == '\0')
		return -1;
	for (; *v != '\0'; v++) {
		if (*v < '0' || *v > '9' || n > (INT64_MAX - (*v - '0')) / 10)
			return -1;
		n = n * 10 + (*v - '0');
	}
	return n;
}

static bool named(const struct evkeyval *kv, const char *name)
{
	return evutil_ascii_strcasecmp(kv->key, name) == 0;
}

/* The framing headers of head, each the last of its name, and how many there were. */
struct framing {
	size_t hosts, lengths, codings;
	const char *length, *coding;
};

static int scan(const struct http_framing_head *head, struct framing *f, const char **why)
{
	struct evkeyval *kv;
	TAILQ_FOREACH(kv, head->headers, next)
	{
		if (!is_token(kv->key))
			return refuse(why, "malformed header name");
		if (named(kv, "Host"))
			f->hosts++;
		if (named(kv, "Content-Length")) {
			f->lengths++;
			f->length = kv->value;
		}
		if (named(kv, "Transfer-Encoding")) {
			f->codings++;
			f->coding = kv->value;
		}
	}
	return 0;
}

static int check_coding(const struct http_framing_head *head, const struct framing *f,
			const char **why)
{
	if (f->codings > 1 || evutil_ascii_strcasecmp(f->coding, "chunked") != 0)
		return refuse(why, "unsupported Transfer-Encoding");
	if (f->lengths > 0)
		return refuse(why, "both Content-Length and Transfer-Encoding");
	if (head->major == 1 && head->minor == 0)
		return refuse(why, "Transfer-Encoding in an HTTP/1.0 request");
	return 0;
}

int http_framing_check(const struct http_framing_head *head, const char **why)
{
	struct framing f = {0};
	int64_t length = 0;
	if (!target_ok(head->target))
		return refuse(why, "malformed request target");
	if (scan(head, &f, why) != 0)
		return 400;
	if (f.hosts > 1)
		return refuse(why, "more than one Host header");
	if (f.lengths > 1)
		return refuse(why, "more than one Content-Length header");
	if (f.lengths == 1 && (length = length_value(f.length)) < 0)
		return refuse(why, "invalid Content-Length");
	if (f.codings > 0 && check_coding(head, &f, why) != 0)
		return 400;
	/* evhttp reads no body after a HEAD: its bytes would be read as the next request. */
	if ((head->method & (EVHTTP_REQ_HEAD | EVHTTP_REQ_TRACE)) && (length > 0 || f.codings > 0))
		return refuse(why, "a HEAD request has no body");
	return 0;
}

static int check_request(struct evhttp_request *req, const char **why)
{
	struct http_framing_head head = {
	    .headers = evhttp_request_get_input_headers(req),
	    .method = evhttp_request_get_command(req),
	    .major = req->major,
	    .minor = req->minor,
	    .target = evhttp_request_get_uri(req),
	};
	return http_framing_check(&head, why);
}

/* Replaces the framing headers by one evhttp refuses, whichever of each it reads. */
static void unframe(struct evkeyvalq *headers)
{
	while (evhttp_remove_header(headers, "Transfer-Encoding") == 0)
		;
	while (evhttp_remove_header(headers, "Content-Length") == 0)
		;
	evhttp_add_header(headers, "Content-Length", "refused");
}

static int on_headers(struct evhttp_request *req, void *arg)
{
	const char *why;
	hooked = true;
	refusal.req = NULL;
	if (check_request(req, &why) == 0) {
		passed = req;
		return 0;
	}
	passed = NULL;
	refusal.req = req;
	refusal.why = why;
	/* Not chunked, no length: evhttp fails the request as malformed. */
	unframe(evhttp_request_get_input_headers(req));
	return 0;
}

static bool take_refusal(const struct evhttp_request *req, const char **why)
{
	bool mine = refusal.req != NULL && refusal.req == req;
	if (mine)
		*why = refusal.why;
	refusal.req = NULL;
	return mine;
}

/* The first request came without its head checked: say once what that costs. */
static void warn_unhooked(void)
{
	static bool warned;
	if (hooked || warned)
		return;
	warned = true;
	log_warn("libevent binds its own calls, so sesame's hooks in it do not take: a request's "
		 "framing is checked only after its body is read, and libevent's error pages may "
		 "be its own HTML");
}

int http_framing_verdict(struct evhttp_request *ev, const char **why)
{
	warn_unhooked();
	if (take_refusal(ev, why))
		return 400;
	if (passed == ev) { /* its head was checked before its body was read */
		passed = NULL;
		return 0;
	}
	return check_request(ev, why);
}

int http_framing_refused(const struct evhttp_request *ev, const char **why)
{
	return take_refusal(ev, why);
}

#ifdef HAVE_EVHTTP_SET_NEWREQCB
static int on_new_request(struct evhttp_request *req, void *arg)
{
	evhttp_request_set_header_cb(req, on_headers);
	return 0;
}

void http_framing_install(struct evhttp *http)
{
	evhttp_set_newreqcb(http, on_new_request, NULL);
}
#else
/* The server whose requests are checked: libevent creates them with it as their argument. */
static const struct evhttp *checked;

void http_framing_install(struct evhttp *http)
{
	checked = http;
}

typedef struct evhttp_request *(*request_new_fn)(void (*)(struct evhttp_request *, void *), void *);

/* libevent's evhttp_request_new, in the library that defines evhttp_new. */
static request_new_fn request_new_in_libevent(void)
{
	Dl_info info;
	void *lib;
	if (dladdr((void *)evhttp_new, &info) == 0 || info.dli_fname == NULL ||
	    (lib = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD)) == NULL)
		return NULL;
	request_new_fn fn = (request_new_fn)dlsym(lib, "evhttp_request_new");
	dlclose(lib); /* only the reference RTLD_NOLOAD took: libevent stays */
	return fn;
}

/* libevent's own evhttp_request_new: the definition after this one, else the library's. */
static request_new_fn libevent_request_new(void)
{
	static request_new_fn fn;
	static bool looked;
	if (looked)
		return fn;
	looked = true;
	fn = (request_new_fn)dlsym(RTLD_NEXT, "evhttp_request_new");
	if (fn != NULL && fn != evhttp_request_new)
		return fn;
	const char *err = dlerror();
	log_error("cannot find libevent's evhttp_request_new after sesame's: %s; looking in "
		  "the library itself",
		  err != NULL ? err : "it is sesame's own");
	fn = request_new_in_libevent();
	if (fn == evhttp_request_new)
		fn = NULL;
	if (fn == NULL)
		log_error("cannot find libevent's evhttp_request_new: no request can be read");
	return fn;
}

/* Replaces libevent's, to set the header callback (see the comment at the top). */
struct evhttp_request *evhttp_request_new(void (*cb)(struct evhttp_request *, void *), void *arg)
{
	request_new_fn libevent_new = libevent_request_new();
	if (libevent_new == NULL)
		return NULL;
	struct evhttp_request *req = libevent_new(cb, arg);
	if (req != NULL && checked != NULL && arg == checked)
		evhttp_request_set_header_cb(req, on_headers);
	return req;
}
#endif
