/* outbound.h: a worker's outbound transfers (SMTP, HTTP) on libcurl's multi interface. */
#ifndef SESAME_OUTBOUND_H
#define SESAME_OUTBOUND_H

#include <curl/curl.h>
#include <stdbool.h>

struct event;
struct event_base;
struct outbound;

/* One transfer: the caller's easy handle, set up, and what to call when it ends. */
struct outbound_transfer {
	CURL *easy;
	/* On the loop, once: never from inside outbound_start or outbound_cancel. */
	void (*done)(struct outbound_transfer *t);
	CURLcode result; /* curl's, when done */
	bool cancelled;	 /* outbound_cancel or outbound_free ended it */
	/* the pool's */
	struct outbound *ob;
	struct outbound_transfer *prev, *next;
	/* delivers a cancelled transfer's done on a later turn; made by outbound_start */
	struct event *later;
};

/* The transfers of a worker, driven by base's loop. NULL when memory runs out. */
struct outbound *outbound_new(struct event_base *base);

/* Ends every transfer in flight as cancelled (their done called now), then frees ob. */
void outbound_free(struct outbound *ob);

/* Starts t->easy; 0, or -1 (done will not be called) when curl refuses the handle or memory
 * runs out. */
int outbound_start(struct outbound *ob, struct outbound_transfer *t);

/* Stops t: curl lets go of its easy handle now; done follows from the loop. Once per transfer. */
void outbound_cancel(struct outbound_transfer *t);

/* What went wrong with a transfer that ended in result, in a few words for the log. */
const char *outbound_failure(CURLcode result);
/* The same words when a script's caller may see them too (connection refused, timed out,
 * response too large), else other: the detail stays in the log. */
const char *outbound_failure_shown(CURLcode result, const char *other);

#endif
