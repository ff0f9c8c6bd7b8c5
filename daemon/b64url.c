/*
 * b64url.c: base64url decoding for the token check.
 *
 * Every request behind forward auth decodes a token's claims and signature. libsodium's
 * decoder is constant time, which costs about 80 instructions a character; a token's parts
 * are public, so table lookups do, four letters at a time, with the same strictness (the unit
 * tests compare both on the edge cases and on random input).
 */
#include "autoconfig.h"

#include "b64url.h"

#include <stdint.h>

/* The value of each letter plus one; 0 for the characters outside the alphabet. */
static const uint8_t value[256] = {
    ['A'] = 1,	['B'] = 2,  ['C'] = 3,	['D'] = 4,  ['E'] = 5,	['F'] = 6,  ['G'] = 7,	['H'] = 8,
    ['I'] = 9,	['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14, ['O'] = 15, ['P'] = 16,
    ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22, ['W'] = 23, ['X'] = 24,
    ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28, ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32,
    ['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40,
    ['o'] = 41, ['p'] = 42, ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48,
    ['w'] = 49, ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
    ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['-'] = 63, ['_'] = 64,
};

int b64url_decode(const char *s, size_t len, unsigned char *out, size_t max, size_t *outlen)
{
	const unsigned char *u = (const unsigned char *)s;
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t n = 0, i = 0;
	/* Four letters make three bytes; a value above 63 (0 - 1 wraps) is no letter. */
	for (; i + 4 <= len && n + 3 <= max; i += 4) {
		uint32_t a = value[u[i]] - 1u, b = value[u[i + 1]] - 1u, c = value[u[i + 2]] - 1u,
			 d = value[u[i + 3]] - 1u;
		if ((a | b | c | d) > 63)
			return -1;
		uint32_t g = a << 18 | b << 12 | c << 6 | d;
		out[n] = (unsigned char)(g >> 16);
		out[n + 1] = (unsigned char)(g >> 8);
		out[n + 2] = (unsigned char)g;
		n += 3;
	}
	for (; i < len; i++) {
		uint32_t v = value[u[i]] - 1u;
		if (v > 63)
			return -1;
		acc = (acc << 6) | v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (n >= max)
				return -1;
			out[n++] = (unsigned char)(acc >> bits);
		}
	}
	if (bits > 4 || (acc & ((1u << bits) - 1u)) != 0)
		return -1;
	*outlen = n;
	return 0;
}
