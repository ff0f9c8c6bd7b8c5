/*
 * fuzz_claims.c: the claims reader of the token check (claims.c) against jansson.
 *
 * Every input is a claims text: claims_parse must accept exactly what json_loadb (with
 * JSON_REJECT_DUPLICATES) reads as an object, and read the same values, whether its scanner
 * read the text or left it to jansson; the object it builds on demand must equal jansson's.
 * A different verdict or a different value aborts.
 */
#include "autoconfig.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "claims.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool same_claim(const struct claim *a, const struct claim *b)
{
	if (a->kind != b->kind)
		return false;
	if (a->kind == CLAIM_STRING)
		return a->len == b->len && memcmp(a->s, b->s, a->len) == 0 && a->s[a->len] == '\0';
	if (a->kind == CLAIM_INTEGER && a->i != b->i)
		return false;
	return (a->kind != CLAIM_INTEGER && a->kind != CLAIM_REAL) || a->d == b->d;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	struct claims c = {0}, j = {0};
	bool ok = claims_parse(&c, text, size);
	json_t *v = json_loadb(text, size, JSON_REJECT_DUPLICATES, NULL);
	if (ok != json_is_object(v) || ok != claims_present(&c))
		abort();
	if (ok) {
		claims_from_json(&j, v);
		for (size_t k = 0; k < CLAIMS_KNOWN; k++) {
			if (!same_claim(&c.c[k], &j.c[k]))
				abort();
		}
		if (!json_equal(claims_json(&c), v))
			abort();
	}
	json_decref(v);
	claims_clear(&c);
	return 0;
}
