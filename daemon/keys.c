/*
 * keys.c: the asymmetric keys of JWT signatures (RS256/384/512, ES256/384/512), with OpenSSL.
 *
 * Keys are read once, when the configuration loads, from PEM files into EVP_PKEYs, and checked
 * against the algorithm; signing and verifying then use them as they are. A JWS ECDSA
 * signature is r||s, each as wide as the curve's field (RFC 7518 section 3.4), where OpenSSL
 * speaks DER: the two forms are converted here, and a signature of any other width is refused.
 * A key's kid is its RFC 7638 thumbprint, so that anyone holding the public key computes the
 * same one. Nothing here prints a key, the PEM text read is wiped, and OpenSSL's error queue
 * is left empty.
 */
#include "autoconfig.h"

#include "keys.h"

#include <errno.h>
#include <limits.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "file.h"

#define MAX_FIELD 66 /* P-521 */

/* A key sesamed reads at start has nobody to ask for a passphrase. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

/* "P-256" for OpenSSL's "prime256v1", or the name as it is. */
static const char *curve_name(const char *group)
{
	const char *nist = EC_curve_nid2nist(OBJ_sn2nid(group));
	return nist != NULL ? nist : group;
}

static bool suits(const EVP_PKEY *pkey, const struct jwa_alg *a, const char *path, char *err,
		  size_t errlen)
{
	const char *want = a->family == 'R' ? "RSA" : "EC";
	char group[64];
	if (!EVP_PKEY_is_a(pkey, want)) {
		snprintf(err, errlen, "%s holds a key of type %s; %s needs an %s key", path,
			 EVP_PKEY_get0_type_name(pkey), a->name, want);
		return false;
	}
	if (a->family == 'R' && (EVP_PKEY_get_bits(pkey) < KEYS_MIN_RSA_BITS ||
				 EVP_PKEY_get_bits(pkey) > KEYS_MAX_RSA_BITS)) {
		snprintf(err, errlen, "%s holds a %d-bit RSA key; %s takes %d to %d bits", path,
			 EVP_PKEY_get_bits(pkey), a->name, KEYS_MIN_RSA_BITS, KEYS_MAX_RSA_BITS);
		return false;
	}
	if (a->family == 'E' && (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME,
								group, sizeof(group), NULL) != 1 ||
				 strcmp(group, a->group) != 0)) {
		snprintf(err, errlen, "%s holds an EC key on %s; %s needs one on %s", path,
			 curve_name(group), a->name, a->crv);
		return false;
	}
	return true;
}

struct evp_pkey_st *keys_load(const char *path, bool private_key, const struct jwa_alg *a,
			      char *err, size_t errlen)
{
	/* Read here rather than by OpenSSL through stdio, so that the PEM text is wiped after. */
	size_t len = 0;
	char *pem = file_read_len(path, &len);
	if (pem == NULL) {
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		return NULL;
	}
	BIO *bio = len <= INT_MAX ? BIO_new_mem_buf(pem, (int)len) : NULL;
	EVP_PKEY *pkey = bio == NULL   ? NULL
			 : private_key ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL)
				       : PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL);
	int read_errno = bio == NULL ? ENOMEM : 0;
	BIO_free(bio);
	file_free_secret(pem, len);
	ERR_clear_error();
	if (pkey == NULL) {
		if (read_errno != 0)
			snprintf(err, errlen, "cannot read %s: %s", path, strerror(read_errno));
		else
			snprintf(err, errlen, "%s holds no %s", path,
				 private_key ? "unencrypted PEM private key"
					     : "PEM public key (BEGIN PUBLIC KEY)");
		return NULL;
	}
	if (!suits(pkey, a, path, err, errlen)) {
		EVP_PKEY_free(pkey);
		return NULL;
	}
	return pkey;
}

void keys_free(struct evp_pkey_st *pkey)
{
	EVP_PKEY_free(pkey);
}

struct evp_pkey_st *keys_generate(const struct jwa_alg *a, int bits)
{
	EVP_PKEY *pkey = a->family == 'R' ? EVP_RSA_gen((unsigned int)bits) : EVP_EC_gen(a->crv);
	ERR_clear_error();
	return pkey;
}

char *keys_pem(struct evp_pkey_st *pkey, bool private_key)
{
	/* Secure memory when OpenSSL has a secure heap; plain memory, wiped, otherwise. */
	BIO *bio = BIO_new(BIO_s_secmem());
	char *data, *out = NULL;
	long len;
	if (bio != NULL &&
	    (private_key ? PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL)
			 : PEM_write_bio_PUBKEY(bio, pkey)) == 1 &&
	    (len = BIO_get_mem_data(bio, &data)) > 0 && (out = malloc((size_t)len + 1)) != NULL) {
		memcpy(out, data, (size_t)len);
		out[len] = '\0';
	}
	BIO_free(bio);
	ERR_clear_error();
	return out;
}

bool keys_match(const struct evp_pkey_st *a, const struct evp_pkey_st *b)
{
	bool same = EVP_PKEY_eq(a, b) == 1;
	ERR_clear_error();
	return same;
}

/* ---- JWK ---- */

static json_t *b64url(const unsigned char *b, size_t n)
{
	char
	    text[sodium_base64_ENCODED_LEN(KEYS_MAX_SIG, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
	if (n > KEYS_MAX_SIG)
		return NULL;
	sodium_bin2base64(text, sizeof(text), b, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	return json_string(text);
}

/* A number of the key, base64url, width bytes wide (0: as few as it takes). */
static json_t *number(const EVP_PKEY *pkey, const char *name, size_t width)
{
	BIGNUM *bn = NULL;
	json_t *out = NULL;
	if (EVP_PKEY_get_bn_param(pkey, name, &bn) == 1) {
		unsigned char buf[KEYS_MAX_SIG];
		size_t n = width > 0 ? width : (size_t)BN_num_bytes(bn);
		if (n <= sizeof(buf) && BN_bn2binpad(bn, buf, (int)n) == (int)n)
			out = b64url(buf, n);
	}
	BN_free(bn);
	return out;
}

/* The members of the key's JWK that RFC 7638 hashes (RFC 7518 section 6). */
static bool add_public(json_t *jwk, const EVP_PKEY *pkey, const struct jwa_alg *a)
{
	bool ok;
	if (a->family == 'R')
		ok = json_object_set_new(jwk, "kty", json_string("RSA")) == 0 &&
		     json_object_set_new(jwk, "n",
					 number(pkey, OSSL_PKEY_PARAM_RSA_N,
						(size_t)EVP_PKEY_get_size(pkey))) == 0 &&
		     json_object_set_new(jwk, "e", number(pkey, OSSL_PKEY_PARAM_RSA_E, 0)) == 0;
	else
		ok = json_object_set_new(jwk, "kty", json_string("EC")) == 0 &&
		     json_object_set_new(jwk, "crv", json_string(a->crv)) == 0 &&
		     json_object_set_new(jwk, "x",
					 number(pkey, OSSL_PKEY_PARAM_EC_PUB_X, a->field)) == 0 &&
		     json_object_set_new(jwk, "y",
					 number(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, a->field)) == 0;
	ERR_clear_error();
	return ok;
}

bool keys_thumbprint(const struct evp_pkey_st *pkey, const struct jwa_alg *a,
		     char kid[KEYS_KID_LEN])
{
	unsigned char digest[crypto_hash_sha256_BYTES];
	json_t *jwk = json_object();
	/* Sorted keys, no white space: the form RFC 7638 hashes. */
	char *text = jwk != NULL && add_public(jwk, pkey, a)
			 ? json_dumps(jwk, JSON_SORT_KEYS | JSON_COMPACT)
			 : NULL;
	json_decref(jwk);
	if (text == NULL)
		return false;
	crypto_hash_sha256(digest, (const unsigned char *)text, strlen(text));
	free(text);
	sodium_bin2base64(kid, KEYS_KID_LEN, digest, sizeof(digest),
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	return true;
}

json_t *keys_jwk(const struct evp_pkey_st *pkey, const char *kid, const struct jwa_alg *a)
{
	json_t *jwk = json_pack("{s:s, s:s, s:s}", "use", "sig", "alg", a->name, "kid", kid);
	if (jwk != NULL && !add_public(jwk, pkey, a)) {
		json_decref(jwk);
		return NULL;
	}
	return jwk;
}

/* ---- signatures ---- */

/* OpenSSL's DER ECDSA signature to r||s, in place (sig holds at least 2 * field bytes). */
static bool der_to_raw(unsigned char *sig, size_t *len, size_t field)
{
	const unsigned char *p = sig;
	ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)*len);
	unsigned char raw[2 * MAX_FIELD];
	bool ok = es != NULL && field <= MAX_FIELD &&
		  BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, (int)field) == (int)field &&
		  BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + field, (int)field) == (int)field;
	ECDSA_SIG_free(es);
	if (ok) {
		memcpy(sig, raw, 2 * field);
		*len = 2 * field;
	}
	return ok;
}

/* r||s to DER for OpenSSL; OPENSSL_malloc'd. Range checks are left to the verification. */
static unsigned char *raw_to_der(const unsigned char *sig, size_t field, size_t *derlen)
{
	ECDSA_SIG *es = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(sig, (int)field, NULL), *s = BN_bin2bn(sig + field, (int)field, NULL);
	unsigned char *der = NULL;
	if (es == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(es, r, s) != 1) {
		BN_free(r);
		BN_free(s);
		ECDSA_SIG_free(es);
		return NULL;
	}
	int n = i2d_ECDSA_SIG(es, &der);
	ECDSA_SIG_free(es);
	if (n <= 0)
		return NULL;
	*derlen = (size_t)n;
	return der;
}

unsigned char *keys_sign(struct evp_pkey_st *pkey, const struct jwa_alg *a, const char *data,
			 size_t len, size_t *siglen)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char *sig = NULL;
	size_t n = 0;
	if (ctx == NULL || EVP_DigestSignInit(ctx, NULL, a->md(), NULL, pkey) != 1 ||
	    EVP_DigestSign(ctx, NULL, &n, (const unsigned char *)data, len) != 1 ||
	    (sig = malloc(n > 2 * a->field ? n : 2 * a->field)) == NULL ||
	    EVP_DigestSign(ctx, sig, &n, (const unsigned char *)data, len) != 1 ||
	    (a->family == 'E' && !der_to_raw(sig, &n, a->field))) {
		free(sig);
		sig = NULL;
	}
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	*siglen = n;
	return sig;
}

bool keys_verify(struct evp_pkey_st *pkey, const struct jwa_alg *a, const char *data, size_t len,
		 const unsigned char *sig, size_t siglen)
{
	unsigned char *der = NULL;
	if (a->family == 'E') {
		/* Exactly r||s: a DER signature, or one of another curve, is refused here. */
		if (siglen != 2 * a->field || (der = raw_to_der(sig, a->field, &siglen)) == NULL) {
			ERR_clear_error();
			return false;
		}
		sig = der;
	} else if (siglen != (size_t)EVP_PKEY_get_size(pkey)) {
		return false;
	}
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool ok = ctx != NULL && EVP_DigestVerifyInit(ctx, NULL, a->md(), NULL, pkey) == 1 &&
		  EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *)data, len) == 1;
	EVP_MD_CTX_free(ctx);
	OPENSSL_free(der);
	ERR_clear_error();
	return ok;
}
