/*
 * sha256.h: SHA-256, HMAC-SHA256 and PBKDF2-HMAC-SHA256 for the pbkdf2_sha256 hasher, with the
 * compression on the CPU's SHA extensions where present and in portable C elsewhere.
 *
 * Each implementation is a table of two functions: the compression of whole blocks and
 * PBKDF2's inner loop. sha256_best() picks one for this CPU; the tests call each one directly.
 * Thread-safe: nothing here keeps state between calls.
 */
#ifndef SESAME_SHA256_H
#define SESAME_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_BLOCK_BYTES  64
#define SHA256_DIGEST_BYTES 32

struct sha256_impl {
	const char *name;
	/* Runs the compression over n blocks of 64 bytes, updating the eight state words h. */
	void (*compress)(uint32_t h[8], const uint8_t *blocks, size_t n);
	/*
	 * PBKDF2's iterations 2..count+1 for one output block: with inner and outer the HMAC
	 * states after the key's pads, u the previous U as state words and t the running XOR,
	 * sets u = HMAC(u) and t ^= u, count times.
	 */
	void (*iterate)(const uint32_t inner[8], const uint32_t outer[8], uint32_t u[8],
			uint32_t t[8], unsigned long count);
};

/* Portable C: every CPU. */
extern const struct sha256_impl sha256_portable;

#if defined(__x86_64__) || defined(__i386__)
/* The SHA extensions (with SSSE3 and SSE4.1): only where sha256_shani_supported(). */
extern const struct sha256_impl sha256_shani;
int sha256_shani_supported(void);
#endif

/* The fastest implementation this CPU runs. */
const struct sha256_impl *sha256_best(void);

/* An incremental SHA-256. */
struct sha256_ctx {
	const struct sha256_impl *impl;
	uint32_t h[8];
	uint64_t bytes;
	uint8_t buf[SHA256_BLOCK_BYTES];
	size_t fill;
};

void sha256_begin(struct sha256_ctx *c, const struct sha256_impl *impl);
void sha256_update(struct sha256_ctx *c, const void *data, size_t len);
void sha256_finish(struct sha256_ctx *c, uint8_t out[SHA256_DIGEST_BYTES]);

void sha256_hmac(const struct sha256_impl *impl, const void *key, size_t keylen, const void *msg,
		 size_t len, uint8_t out[SHA256_DIGEST_BYTES]);

/* PBKDF2-HMAC-SHA256 (RFC 8018) of any output length; rounds >= 1. Wipes what it derived. */
void sha256_pbkdf2(const struct sha256_impl *impl, const void *password, size_t len,
		   const void *salt, size_t saltlen, unsigned long rounds, uint8_t *out,
		   size_t outlen);

#endif
