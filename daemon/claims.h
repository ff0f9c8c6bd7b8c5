/* claims.h: a token's claims set, read once into what the checks ask of it. */
#ifndef SESAME_CLAIMS_H
#define SESAME_CLAIMS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* A claim's JSON type, as jansson would give it. */
enum claim_kind {
	CLAIM_ABSENT,
	CLAIM_STRING,
	CLAIM_INTEGER,
	CLAIM_REAL,
	CLAIM_TRUE,
	CLAIM_FALSE,
	CLAIM_NULL,
	CLAIM_OTHER /* an object or an array: only in claims jansson read */
};

struct claim {
	enum claim_kind kind;
	const char *s; /* CLAIM_STRING: NUL-terminated, len bytes (which may hold a NUL) */
	size_t len;
	long long i; /* CLAIM_INTEGER */
	double d;    /* CLAIM_INTEGER and CLAIM_REAL: the number, as json_number_value gives it */
};

/* The claims the checks read. */
enum claim_name {
	CLAIM_EXP,
	CLAIM_NBF,
	CLAIM_IAT,
	CLAIM_JTI,
	CLAIM_FAM,
	CLAIM_SUB,
	CLAIM_TYPE,
	CLAIM_ISS,
	CLAIM_AUD,
	CLAIM_FRESH,
	CLAIM_CSRF,
	CLAIMS_KNOWN
};

/* Zeroed: no claims. */
struct claims {
	struct claim c[CLAIMS_KNOWN];
	json_t *json; /* the whole object: when jansson read it, or once claims_json built it */
	char *text;   /* when scanned: the JSON text, then a copy holding the strings */
	size_t len;
};

/*
 * Reads the JSON text of a claims set (n bytes, not NUL-terminated) into c, which must be
 * empty. A flat object of plain strings (printable ASCII, no escapes), integers and literals
 * is scanned here; anything else is left to jansson (with JSON_REJECT_DUPLICATES), so that
 * what is accepted, and every value read, is exactly what jansson gives. False, with c
 * empty, when the text is not a JSON object or memory ran out.
 */
bool claims_parse(struct claims *c, const char *text, size_t n);

/* The scanner alone: true when it read the text; false when the text is jansson's to judge. */
bool claims_scan(struct claims *c, const char *text, size_t n);

/* Fills c's claims from obj, which c does not own (c->json is left as it is). */
void claims_from_json(struct claims *c, const json_t *obj);

/* Were claims read into c? */
bool claims_present(const struct claims *c);

/* The claims as a JSON object, built from the text on first use; c keeps it. NULL when
 * memory ran out or c is empty. */
json_t *claims_json(struct claims *c);

void claims_clear(struct claims *c);

#endif
