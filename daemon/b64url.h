/* b64url.h: base64url without padding (RFC 4648 section 5), as JWS compact tokens carry it. */
#ifndef SESAME_B64URL_H
#define SESAME_B64URL_H

#include <stddef.h>

/*
 * Decodes len characters of s into out (room for max bytes): exactly as strict as
 * libsodium's sodium_base642bin with sodium_base64_VARIANT_URLSAFE_NO_PADDING and nothing
 * ignored (only the 64 letters; no padding; a length of 4n+1 and unused bits that are not
 * zero are refused) on ASCII; a byte above 0x7f, which libsodium's decoder takes for some letter,
 * is refused here (tokens_verify relies on it: it checks a token's characters by decoding
 * them). Returns 0 with *outlen
 * set, or -1. Not constant time: for public data
 * (a token's header, claims and signature), never for a secret.
 */
int b64url_decode(const char *s, size_t len, unsigned char *out, size_t max, size_t *outlen);

#endif
