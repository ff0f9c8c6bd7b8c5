/*
 * plugin_abi.c: what each ABI minor of each kind's descriptor holds, and the check of a
 * descriptor against it.
 *
 * ABI 1 is frozen: a minor only appends members to a kind's descriptor. Each kind has a table
 * of its members with the minor that introduced each, so the size a descriptor of minor m must
 * have is the offset of the first member introduced after m (the whole struct when there is
 * none), and a function is required of a plugin only when its minor had it. A descriptor that
 * passes is copied into a zeroed struct of this sesamed's size: members an older minor lacks
 * read as NULL, the tail a newer minor added is never read, and nothing past the plugin's own
 * size is touched. Adding a member in minor 1.N is one line in its kind's table.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin_private.h"
#include "plural.h"

#define MEMBER(TYPE, NAME, MINOR)                                                                  \
	{                                                                                          \
#NAME, offsetof(TYPE, NAME), (MINOR), true                                         \
	}

static const struct plugin_member validator_members[] = {
    MEMBER(struct sesame_validator, init, 0),
    MEMBER(struct sesame_validator, fini, 0),
    MEMBER(struct sesame_validator, check, 0),
};

static const struct plugin_member hasher_members[] = {
    MEMBER(struct sesame_hasher, init, 0),     MEMBER(struct sesame_hasher, fini, 0),
    MEMBER(struct sesame_hasher, hash, 0),     MEMBER(struct sesame_hasher, verify, 0),
    MEMBER(struct sesame_hasher, identify, 0), MEMBER(struct sesame_hasher, needs_rehash, 0),
};

static const struct plugin_member storage_members[] = {
    MEMBER(struct sesame_storage, init, 0),
    MEMBER(struct sesame_storage, fini, 0),
    MEMBER(struct sesame_storage, migrate, 0),
    MEMBER(struct sesame_storage, worker_start, 0),
    MEMBER(struct sesame_storage, worker_stop, 0),
    MEMBER(struct sesame_storage, user_create, 0),
    MEMBER(struct sesame_storage, user_find, 0),
    MEMBER(struct sesame_storage, user_set_password, 0),
    MEMBER(struct sesame_storage, family_create, 0),
    MEMBER(struct sesame_storage, family_rotate, 0),
    MEMBER(struct sesame_storage, token_revoke, 0),
    MEMBER(struct sesame_storage, revoked_since, 0),
    MEMBER(struct sesame_storage, subject_revoke, 0),
    MEMBER(struct sesame_storage, token_purge, 0),
    MEMBER(struct sesame_storage, failure_check, 0),
    MEMBER(struct sesame_storage, failure_record, 0),
    MEMBER(struct sesame_storage, failure_reset, 0),
    MEMBER(struct sesame_storage, ping, 0),
    MEMBER(struct sesame_storage, user_set_disabled, 0),
    MEMBER(struct sesame_storage, user_list, 0),
    MEMBER(struct sesame_storage, user_delete, 0),
    MEMBER(struct sesame_storage, user_set_verified, 1),
    MEMBER(struct sesame_storage, user_set_email, 1),
    MEMBER(struct sesame_storage, otp_create, 1),
    MEMBER(struct sesame_storage, otp_spend, 1),
    MEMBER(struct sesame_storage, otp_revoke, 1),
    MEMBER(struct sesame_storage, event_add, 1),
    MEMBER(struct sesame_storage, event_list, 1),
    MEMBER(struct sesame_storage, event_purge, 1),
    MEMBER(struct sesame_storage, query, 1),
    MEMBER(struct sesame_storage, otp_find, 1),
};

#define KIND(KIND, NAME, TYPE, MEMBERS)                                                            \
	{                                                                                          \
		(KIND), (NAME), sizeof(TYPE), (MEMBERS), sizeof(MEMBERS) / sizeof((MEMBERS)[0])    \
	}

const struct plugin_kind plugin_kinds[] = {
    KIND(SESAME_PLUGIN_VALIDATOR, "validator", struct sesame_validator, validator_members),
    KIND(SESAME_PLUGIN_HASHER, "hasher", struct sesame_hasher, hasher_members),
    KIND(SESAME_PLUGIN_STORAGE, "storage", struct sesame_storage, storage_members),
    {0, NULL, 0, NULL, 0},
};

/* The size of a descriptor of kind k built for minor: where the next minor's members start. */
size_t plugin_abi_size(const struct plugin_kind *k, unsigned minor)
{
	for (size_t i = 0; i < k->nmembers; i++) {
		if (k->members[i].minor > minor)
			return k->members[i].offset;
	}
	return k->size;
}

static const struct plugin_kind *find_kind(const struct plugin_kind *kinds, uint32_t kind)
{
	for (const struct plugin_kind *k = kinds; k->name != NULL; k++) {
		if (k->kind == kind)
			return k;
	}
	return NULL;
}

static int check_version(const struct sesame_plugin_header *h, char *why, size_t len)
{
	if (h->magic != SESAME_PLUGIN_MAGIC) {
		snprintf(why, len, "it is not a sesame plugin (magic 0x%08x, not 0x%08x)",
			 (unsigned)h->magic, SESAME_PLUGIN_MAGIC);
		return -1;
	}
	if (h->abi_major == SESAME_PLUGIN_ABI_MAJOR)
		return 0;
	snprintf(
	    why, len,
	    "it was built for sesame plugin ABI %u.%u; this sesamed is ABI %d.%d and loads "
	    "plugins built for %d.x: %s",
	    (unsigned)h->abi_major, (unsigned)h->abi_minor, SESAME_PLUGIN_ABI_MAJOR,
	    SESAME_PLUGIN_ABI_MINOR, SESAME_PLUGIN_ABI_MAJOR,
	    h->abi_major > SESAME_PLUGIN_ABI_MAJOR
		? "it needs a newer sesamed, or a build against this sesamed's <sesame/plugin.h>"
		: "rebuild it against this sesamed's <sesame/plugin.h>");
	return -1;
}

/* Every function the plugin's minor requires is there (in the copy: absent ones are NULL). */
static int check_members(const struct plugin_kind *k, const void *copy, unsigned minor, char *why,
			 size_t len)
{
	for (size_t i = 0; i < k->nmembers; i++) {
		const struct plugin_member *m = &k->members[i];
		void (*fn)(void);
		if (!m->required || m->minor > minor)
			continue;
		memcpy(&fn, (const char *)copy + m->offset, sizeof(fn));
		if (fn == NULL) {
			snprintf(why, len, "its %s descriptor lacks %s, required since ABI %d.%u",
				 k->name, m->name, SESAME_PLUGIN_ABI_MAJOR, (unsigned)m->minor);
			return -1;
		}
	}
	return 0;
}

int plugin_abi_check(const struct plugin_kind *kinds, const void *sym, size_t have, void **copy,
		     char *why, size_t len)
{
	*copy = NULL;
	if (have < sizeof(struct sesame_plugin_header)) {
		snprintf(why, len, "its descriptor is truncated (%zu %s; the header alone is %zu)",
			 have, plural((long long)have, "byte", "bytes"),
			 sizeof(struct sesame_plugin_header));
		return -1;
	}
	const struct sesame_plugin_header *h = sym;
	if (check_version(h, why, len) != 0)
		return -1;
	const struct plugin_kind *k = find_kind(kinds, h->kind);
	if (k == NULL) {
		snprintf(why, len, "its kind %u is not one this sesamed loads", (unsigned)h->kind);
		return -1;
	}
	size_t need = plugin_abi_size(k, h->abi_minor);
	if (h->size < need || have < h->size) {
		snprintf(why, len,
			 "its %s descriptor is truncated (it says %u bytes, exports %zu; %zu "
			 "needed for ABI %u.%u)",
			 k->name, (unsigned)h->size, have, need, (unsigned)h->abi_major,
			 (unsigned)h->abi_minor);
		return -1;
	}
	void *c = calloc(1, k->size);
	if (c == NULL) {
		snprintf(why, len, "out of memory");
		return -1;
	}
	memcpy(c, sym, h->size < k->size ? h->size : k->size);
	if (check_members(k, c, h->abi_minor, why, len) != 0) {
		free(c);
		return -1;
	}
	*copy = c;
	return 0;
}
