/*
 * sha256.c: SHA-256 (FIPS 180-4), HMAC-SHA256 (RFC 2104) and PBKDF2-HMAC-SHA256 (RFC 8018)
 * for the pbkdf2_sha256 hasher, which spends all its time here.
 *
 * PBKDF2 runs HMAC once per round on a 32-byte message, so a hash is two compressions of one
 * block per round and nothing else: the key's inner and outer pad states are compressed once
 * per password, the block holding U is the eight state words of the previous HMAC followed by
 * padding that never changes, and the loop keeps U, the running XOR and both pad states in
 * locals (in XMM registers on the SHA extensions), converting nothing to bytes between rounds.
 * Generic PBKDF2 code instead pays per round for copying HMAC contexts, the buffering of
 * partial blocks and the digest's byte order, which is why this loop is more than twice as fast as
 * OpenSSL's PKCS5_PBKDF2_HMAC on the same instructions.
 *
 * Two implementations of the compression and the loop: the SHA extensions (SHA256RNDS2 for two
 * rounds at a time, SHA256MSG1/MSG2 for the message schedule, with SSSE3's byte shuffle and
 * SSE4.1's blend), compiled with a target attribute so that the rest of the build needs no
 * flags and chosen at run time through CPUID; and portable C for every other CPU. The tests
 * run both on the same vectors.
 */
#include "sha256.h"

#include <sodium.h>
#include <string.h>

/* The first 32 bits of the fractional parts of the cube roots of the first 64 primes. */
static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

/* The first 32 bits of the fractional parts of the square roots of the first 8 primes. */
static const uint32_t H0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
			       0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

/* The block after a 32-byte message that follows a 64-byte key block: 0x80, zeros, 768 bits. */
#define U_PAD_WORD   0x80000000u
#define U_TOTAL_BITS ((SHA256_BLOCK_BYTES + SHA256_DIGEST_BYTES) * 8)

static uint32_t load_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void store_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* ---- portable C ---- */

static inline uint32_t rotr(uint32_t x, int n)
{
	return x >> n | x << (32 - n);
}

/* FIPS 180-4's Ch and Maj, in forms with one operation fewer. */
#define CH(x, y, z)  ((z) ^ ((x) & ((y) ^ (z))))
#define MAJ(x, y, z) (((x) & (y)) | ((z) & ((x) | (y))))
#define BSIG0(x)     (rotr(x, 2) ^ rotr(x, 13) ^ rotr(x, 22))
#define BSIG1(x)     (rotr(x, 6) ^ rotr(x, 11) ^ rotr(x, 25))
#define SSIG0(x)     (rotr(x, 7) ^ rotr(x, 18) ^ ((x) >> 3))
#define SSIG1(x)     (rotr(x, 17) ^ rotr(x, 19) ^ ((x) >> 10))

/* Round t with the working variables renamed instead of moved: d and h are the ones written. */
#define ROUND(a, b, c, d, e, f, g, h, t)                                                           \
	do {                                                                                       \
		uint32_t t1 = (h) + BSIG1(e) + CH(e, f, g) + K[t] + w[t];                          \
		(d) += t1;                                                                         \
		(h) = t1 + BSIG0(a) + MAJ(a, b, c);                                                \
	} while (0)

/*
 * One block given as its sixteen message words. w is the caller's scratch for the message
 * schedule, which holds the block (a key's pad, for HMAC) afterwards: the caller wipes it once,
 * after its loop, rather than once per block in PBKDF2's.
 */
static void compress_words(uint32_t h[8], const uint32_t m[16], uint32_t w[64])
{
	uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
	memcpy(w, m, 16 * sizeof(*w));
	for (int t = 16; t < 64; t++)
		w[t] = SSIG1(w[t - 2]) + w[t - 7] + SSIG0(w[t - 15]) + w[t - 16];
	for (int t = 0; t < 64; t += 8) {
		ROUND(a, b, c, d, e, f, g, hh, t);
		ROUND(hh, a, b, c, d, e, f, g, t + 1);
		ROUND(g, hh, a, b, c, d, e, f, t + 2);
		ROUND(f, g, hh, a, b, c, d, e, t + 3);
		ROUND(e, f, g, hh, a, b, c, d, t + 4);
		ROUND(d, e, f, g, hh, a, b, c, t + 5);
		ROUND(c, d, e, f, g, hh, a, b, t + 6);
		ROUND(b, c, d, e, f, g, hh, a, t + 7);
	}
	h[0] += a;
	h[1] += b;
	h[2] += c;
	h[3] += d;
	h[4] += e;
	h[5] += f;
	h[6] += g;
	h[7] += hh;
}

static void compress_portable(uint32_t h[8], const uint8_t *blocks, size_t n)
{
	uint32_t m[16], w[64];
	for (size_t i = 0; i < n; i++, blocks += SHA256_BLOCK_BYTES) {
		for (int j = 0; j < 16; j++)
			m[j] = load_be32(blocks + 4 * j);
		compress_words(h, m, w);
	}
	sodium_memzero(m, sizeof(m));
	sodium_memzero(w, sizeof(w));
}

static void iterate_portable(const uint32_t inner[8], const uint32_t outer[8], uint32_t u[8],
			     uint32_t t[8], unsigned long count)
{
	uint32_t m[16] = {[8] = U_PAD_WORD, [15] = U_TOTAL_BITS}, h[8], w[64];
	for (unsigned long i = 0; i < count; i++) {
		memcpy(m, u, 8 * sizeof(*m));
		memcpy(h, inner, sizeof(h));
		compress_words(h, m, w);
		memcpy(m, h, 8 * sizeof(*m));
		memcpy(h, outer, sizeof(h));
		compress_words(h, m, w);
		for (int j = 0; j < 8; j++) {
			u[j] = h[j];
			t[j] ^= h[j];
		}
	}
	sodium_memzero(m, sizeof(m));
	sodium_memzero(h, sizeof(h));
	sodium_memzero(w, sizeof(w));
}

const struct sha256_impl sha256_portable = {
    .name = "portable", .compress = compress_portable, .iterate = iterate_portable};

/* ---- the SHA extensions ---- */

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>

#define SHANI __attribute__((target("sha,sse4.1,ssse3")))

/*
 * SHA256RNDS2 keeps the working variables as two vectors, lanes 3..0 holding A B E F and
 * C D G H; sesame keeps them as A B C D and E F G H in lanes 0..3, the order of the words in
 * memory, which is also the order of the message words of the next block.
 */
SHANI static inline void to_abef(__m128i abcd, __m128i efgh, __m128i *abef, __m128i *cdgh)
{
	__m128i badc = _mm_shuffle_epi32(abcd, 0xb1);
	__m128i hgfe = _mm_shuffle_epi32(efgh, 0x1b);
	*abef = _mm_alignr_epi8(badc, hgfe, 8);
	*cdgh = _mm_blend_epi16(hgfe, badc, 0xf0);
}

SHANI static inline void from_abef(__m128i abef, __m128i cdgh, __m128i *abcd, __m128i *efgh)
{
	__m128i abef_rev = _mm_shuffle_epi32(abef, 0x1b);
	__m128i ghcd = _mm_shuffle_epi32(cdgh, 0xb1);
	*abcd = _mm_blend_epi16(abef_rev, ghcd, 0xf0);
	*efgh = _mm_alignr_epi8(ghcd, abef_rev, 8);
}

/* The next four message words from the sixteen before them. */
SHANI static inline __m128i schedule(__m128i w0, __m128i w4, __m128i w8, __m128i w12)
{
	__m128i w7 = _mm_alignr_epi8(w12, w8, 4);
	return _mm_sha256msg2_epu32(_mm_add_epi32(_mm_sha256msg1_epu32(w0, w4), w7), w12);
}

/* One block given as its message words m[0..3] (four each); m is overwritten. */
SHANI static inline void block_shani(__m128i *abef, __m128i *cdgh, __m128i m[4])
{
	__m128i abef0 = *abef, cdgh0 = *cdgh;
#pragma GCC unroll 16
	for (int g = 0; g < 16; g++) {
		if (g >= 4)
			m[g & 3] =
			    schedule(m[g & 3], m[(g + 1) & 3], m[(g + 2) & 3], m[(g + 3) & 3]);
		__m128i wk = _mm_add_epi32(m[g & 3], _mm_loadu_si128((const __m128i *)&K[4 * g]));
		*cdgh = _mm_sha256rnds2_epu32(*cdgh, *abef, wk);
		*abef = _mm_sha256rnds2_epu32(*abef, *cdgh, _mm_shuffle_epi32(wk, 0x0e));
	}
	*abef = _mm_add_epi32(*abef, abef0);
	*cdgh = _mm_add_epi32(*cdgh, cdgh0);
}

SHANI static void compress_shani(uint32_t h[8], const uint8_t *blocks, size_t n)
{
	const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
	__m128i abef, cdgh, m[4];
	to_abef(_mm_loadu_si128((const __m128i *)h), _mm_loadu_si128((const __m128i *)(h + 4)),
		&abef, &cdgh);
	for (size_t i = 0; i < n; i++, blocks += SHA256_BLOCK_BYTES) {
		for (int j = 0; j < 4; j++)
			m[j] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(blocks + 16 * j)),
						bswap);
		block_shani(&abef, &cdgh, m);
	}
	from_abef(abef, cdgh, &m[0], &m[1]);
	_mm_storeu_si128((__m128i *)h, m[0]);
	_mm_storeu_si128((__m128i *)(h + 4), m[1]);
	/* The last block's schedule: for HMAC, derived from the key's pad. Not in PBKDF2's loop. */
	sodium_memzero(m, sizeof(m));
}

/* One HMAC half: the block of U (two vectors of words) after the pad state key. */
SHANI static inline void hmac_half(__m128i key_abef, __m128i key_cdgh, __m128i *u0, __m128i *u1)
{
	__m128i m[4] = {*u0, *u1, _mm_set_epi32(0, 0, 0, (int)U_PAD_WORD),
			_mm_set_epi32(U_TOTAL_BITS, 0, 0, 0)};
	block_shani(&key_abef, &key_cdgh, m);
	from_abef(key_abef, key_cdgh, u0, u1);
}

SHANI static void iterate_shani(const uint32_t inner[8], const uint32_t outer[8], uint32_t u[8],
				uint32_t t[8], unsigned long count)
{
	__m128i in_abef, in_cdgh, out_abef, out_cdgh;
	__m128i u0 = _mm_loadu_si128((const __m128i *)u);
	__m128i u1 = _mm_loadu_si128((const __m128i *)(u + 4));
	__m128i t0 = _mm_loadu_si128((const __m128i *)t);
	__m128i t1 = _mm_loadu_si128((const __m128i *)(t + 4));
	to_abef(_mm_loadu_si128((const __m128i *)inner),
		_mm_loadu_si128((const __m128i *)(inner + 4)), &in_abef, &in_cdgh);
	to_abef(_mm_loadu_si128((const __m128i *)outer),
		_mm_loadu_si128((const __m128i *)(outer + 4)), &out_abef, &out_cdgh);
	for (unsigned long i = 0; i < count; i++) {
		hmac_half(in_abef, in_cdgh, &u0, &u1);
		hmac_half(out_abef, out_cdgh, &u0, &u1);
		t0 = _mm_xor_si128(t0, u0);
		t1 = _mm_xor_si128(t1, u1);
	}
	_mm_storeu_si128((__m128i *)u, u0);
	_mm_storeu_si128((__m128i *)(u + 4), u1);
	_mm_storeu_si128((__m128i *)t, t0);
	_mm_storeu_si128((__m128i *)(t + 4), t1);
}

const struct sha256_impl sha256_shani = {
    .name = "sha-ni", .compress = compress_shani, .iterate = iterate_shani};

/* CPUID: leaf 1 ECX for SSSE3 and SSE4.1, leaf 7 EBX bit 29 for the SHA extensions. */
int sha256_shani_supported(void)
{
	unsigned a, b, c, d;
	if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSSE3) || !(c & bit_SSE4_1))
		return 0;
	if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
		return 0;
	return (b & bit_SHA) != 0;
}
#endif

const struct sha256_impl *sha256_best(void)
{
#if defined(__x86_64__) || defined(__i386__)
	if (sha256_shani_supported())
		return &sha256_shani;
#endif
	return &sha256_portable;
}

/* ---- SHA-256 ---- */

static void resume(struct sha256_ctx *c, const struct sha256_impl *impl, const uint32_t h[8],
		   uint64_t bytes)
{
	c->impl = impl;
	memcpy(c->h, h, sizeof(c->h));
	c->bytes = bytes;
	c->fill = 0;
}

void sha256_begin(struct sha256_ctx *c, const struct sha256_impl *impl)
{
	resume(c, impl, H0, 0);
}

void sha256_update(struct sha256_ctx *c, const void *data, size_t len)
{
	const uint8_t *p = data;
	if (len == 0)
		return;
	c->bytes += len;
	if (c->fill > 0) {
		size_t n = SHA256_BLOCK_BYTES - c->fill < len ? SHA256_BLOCK_BYTES - c->fill : len;
		memcpy(c->buf + c->fill, p, n);
		c->fill += n;
		p += n;
		len -= n;
		if (c->fill < SHA256_BLOCK_BYTES)
			return;
		c->impl->compress(c->h, c->buf, 1);
		c->fill = 0;
	}
	c->impl->compress(c->h, p, len / SHA256_BLOCK_BYTES);
	memcpy(c->buf, p + len / SHA256_BLOCK_BYTES * SHA256_BLOCK_BYTES, len % SHA256_BLOCK_BYTES);
	c->fill = len % SHA256_BLOCK_BYTES;
}

/* Pads as FIPS 180-4 section 5.1.1 says: 0x80, zeros, the length in bits. */
static void finish_words(struct sha256_ctx *c)
{
	uint64_t bits = c->bytes * 8;
	c->buf[c->fill++] = 0x80;
	if (c->fill > SHA256_BLOCK_BYTES - 8) {
		memset(c->buf + c->fill, 0, SHA256_BLOCK_BYTES - c->fill);
		c->impl->compress(c->h, c->buf, 1);
		c->fill = 0;
	}
	memset(c->buf + c->fill, 0, SHA256_BLOCK_BYTES - 8 - c->fill);
	store_be32(c->buf + 56, (uint32_t)(bits >> 32));
	store_be32(c->buf + 60, (uint32_t)bits);
	c->impl->compress(c->h, c->buf, 1);
}

void sha256_finish(struct sha256_ctx *c, uint8_t out[SHA256_DIGEST_BYTES])
{
	finish_words(c);
	for (int i = 0; i < 8; i++)
		store_be32(out + 4 * i, c->h[i]);
	sodium_memzero(c, sizeof(*c));
}

/* ---- HMAC-SHA256 ---- */

/* The states after the key's inner (0x36) and outer (0x5c) pads: one compression each. */
static void hmac_key(const struct sha256_impl *impl, const void *key, size_t keylen,
		     uint32_t inner[8], uint32_t outer[8])
{
	uint8_t k[SHA256_BLOCK_BYTES] = {0}, pad[SHA256_BLOCK_BYTES];
	struct sha256_ctx c;
	if (keylen > SHA256_BLOCK_BYTES) {
		sha256_begin(&c, impl);
		sha256_update(&c, key, keylen);
		sha256_finish(&c, k);
	} else if (keylen > 0) {
		memcpy(k, key, keylen);
	}
	for (int i = 0; i < SHA256_BLOCK_BYTES; i++)
		pad[i] = k[i] ^ 0x36;
	memcpy(inner, H0, sizeof(H0));
	impl->compress(inner, pad, 1);
	for (int i = 0; i < SHA256_BLOCK_BYTES; i++)
		pad[i] = k[i] ^ 0x5c;
	memcpy(outer, H0, sizeof(H0));
	impl->compress(outer, pad, 1);
	sodium_memzero(k, sizeof(k));
	sodium_memzero(pad, sizeof(pad));
}

/* The outer half of an HMAC whose inner hash is the digest in c. */
static void hmac_outer(struct sha256_ctx *c, const uint32_t outer[8],
		       uint8_t out[SHA256_DIGEST_BYTES])
{
	uint8_t digest[SHA256_DIGEST_BYTES];
	const struct sha256_impl *impl = c->impl;
	sha256_finish(c, digest);
	resume(c, impl, outer, SHA256_BLOCK_BYTES);
	sha256_update(c, digest, sizeof(digest));
	sha256_finish(c, out);
	sodium_memzero(digest, sizeof(digest));
}

void sha256_hmac(const struct sha256_impl *impl, const void *key, size_t keylen, const void *msg,
		 size_t len, uint8_t out[SHA256_DIGEST_BYTES])
{
	uint32_t inner[8], outer[8];
	struct sha256_ctx c;
	hmac_key(impl, key, keylen, inner, outer);
	resume(&c, impl, inner, SHA256_BLOCK_BYTES);
	sha256_update(&c, msg, len);
	hmac_outer(&c, outer, out);
	sodium_memzero(inner, sizeof(inner));
	sodium_memzero(outer, sizeof(outer));
}

/* ---- PBKDF2-HMAC-SHA256 ---- */

/* T_i = U_1 ^ ... ^ U_rounds, with U_1 = HMAC(salt || INT(i)), as words. */
static void pbkdf2_block(const struct sha256_impl *impl, const uint32_t inner[8],
			 const uint32_t outer[8], const void *salt, size_t saltlen,
			 unsigned long rounds, uint32_t i, uint32_t t[8])
{
	uint8_t be_i[4], u1[SHA256_DIGEST_BYTES];
	uint32_t u[8];
	struct sha256_ctx c;
	store_be32(be_i, i);
	resume(&c, impl, inner, SHA256_BLOCK_BYTES);
	sha256_update(&c, salt, saltlen);
	sha256_update(&c, be_i, sizeof(be_i));
	hmac_outer(&c, outer, u1);
	for (int j = 0; j < 8; j++)
		t[j] = u[j] = load_be32(u1 + 4 * j);
	impl->iterate(inner, outer, u, t, rounds - 1);
	sodium_memzero(u1, sizeof(u1));
	sodium_memzero(u, sizeof(u));
}

void sha256_pbkdf2(const struct sha256_impl *impl, const void *password, size_t len,
		   const void *salt, size_t saltlen, unsigned long rounds, uint8_t *out,
		   size_t outlen)
{
	uint32_t inner[8], outer[8], t[8];
	uint8_t block[SHA256_DIGEST_BYTES];
	hmac_key(impl, password, len, inner, outer);
	for (uint32_t i = 1; outlen > 0; i++) {
		size_t n = outlen < sizeof(block) ? outlen : sizeof(block);
		pbkdf2_block(impl, inner, outer, salt, saltlen, rounds, i, t);
		for (int j = 0; j < 8; j++)
			store_be32(block + 4 * j, t[j]);
		memcpy(out, block, n);
		out += n;
		outlen -= n;
	}
	sodium_memzero(inner, sizeof(inner));
	sodium_memzero(outer, sizeof(outer));
	sodium_memzero(t, sizeof(t));
	sodium_memzero(block, sizeof(block));
}
