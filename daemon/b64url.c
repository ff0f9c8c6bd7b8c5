/*
 * b64url.c: base64url decoding for the token check.
 *
 * Every request behind forward auth decodes a token's claims and signature. libsodium's
 * decoder is constant time, which costs about 80 instructions a character; a token's parts
 * are public, so a table lookup a character does, with the same strictness (the unit tests
 * compare both on the edge cases and on random input).
 */
#include "autoconfig.h"

#include "b64url.h"

#include <stdint.h>

/* The value of each character, 0xff for those outside the alphabet. */
static const uint8_t value[256] = {
    ['A'] = 0,	['B'] = 1,  ['C'] = 2,	['D'] = 3,  ['E'] = 4,	['F'] = 5,  ['G'] = 6,	['H'] = 7,
    ['I'] = 8,	['J'] = 9,  ['K'] = 10, ['L'] = 11, ['M'] = 12, ['N'] = 13, ['O'] = 14, ['P'] = 15,
    ['Q'] = 16, ['R'] = 17, ['S'] = 18, ['T'] = 19, ['U'] = 20, ['V'] = 21, ['W'] = 22, ['X'] = 23,
    ['Y'] = 24, ['Z'] = 25, ['a'] = 26, ['b'] = 27, ['c'] = 28, ['d'] = 29, ['e'] = 30, ['f'] = 31,
    ['g'] = 32, ['h'] = 33, ['i'] = 34, ['j'] = 35, ['k'] = 36, ['l'] = 37, ['m'] = 38, ['n'] = 39,
    ['o'] = 40, ['p'] = 41, ['q'] = 42, ['r'] = 43, ['s'] = 44, ['t'] = 45, ['u'] = 46, ['v'] = 47,
    ['w'] = 48, ['x'] = 49, ['y'] = 50, ['z'] = 51, ['0'] = 52, ['1'] = 53, ['2'] = 54, ['3'] = 55,
    ['4'] = 56, ['5'] = 57, ['6'] = 58, ['7'] = 59, ['8'] = 60, ['9'] = 61, ['-'] = 62, ['_'] = 63,
};

/* Whether c is one of the 64 letters: 'A' is the only one whose value is 0. */
static int letter(unsigned char c)
{
	return value[c] != 0 || c == 'A';
}

int b64url_decode(const char *s, size_t len, unsigned char *out, size_t max, size_t *outlen)
{
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!letter(c))
			return -1;
		acc = (acc << 6) | value[c];
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

bool b64url_jws_chars(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (!letter((unsigned char)s[i]) && s[i] != '.')
			return false;
	}
	return true;
}
