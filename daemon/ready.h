/* ready.h: GET /readyz, a worker's answer to "can you serve requests that need storage?". */
#ifndef SESAME_READY_H
#define SESAME_READY_H

struct config;
struct http_request;
struct jobs;
struct ready;

/* In a worker, once its storage is started: the readiness checks, run on jobs. NULL when out
 * of memory. */
struct ready *ready_new(const struct config *cfg, struct jobs *jobs);

/* After the loop has ended with no job pending. */
void ready_free(struct ready *rd);

/*
 * Answers r (GET or HEAD /readyz): 200 {"result":"success","status":"ready"} when every check
 * passes, else 503 with the first failing check's message. On the event loop; replies now, or
 * once a check that was due has run on a job thread.
 */
void ready_answer(void *rd, struct http_request *r);

#endif
