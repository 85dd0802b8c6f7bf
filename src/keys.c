/*
 * keys.c — the master key.
 *
 * privacy.master_key_command is run once, in the postmaster, while
 * shared_preload_libraries is processed.  Its stdout (64 hex characters) is
 * decoded into a sodium_malloc'ed page: guard pages around it, locked in
 * memory, excluded from core dumps (MADV_DONTDUMP), and kept PROT_NONE except
 * for the few instructions that derive a subkey from it.  Backends inherit
 * the page through fork(); nothing here ever writes the key to a file, a
 * table, WAL, a log line or an error message.
 *
 * Every other key (data-key wrapping, the access-log MAC, subject hashing)
 * is derived from the master key with libsodium's KDF, so this file is the
 * only one that touches the master key itself.
 *
 * A missing, failing or malformed command must not stop the server: the
 * failure is remembered (without key bytes) and every function that needs a
 * key reports it through keys_require_master_key().
 */
#include "privacy.h"

#include <stdio.h>
#include <sys/wait.h>
#include <sodium.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "hexkey.h"
#include "utils/builtins.h"

/* Output longer than this cannot be a key; reading stops there. */
#define KEY_COMMAND_MAX_OUTPUT 256

/*
 * Slot 0 is the current master key; slot 1 the previous one, loaded only
 * during a master-key rotation (privacy.previous_master_key_command) so that
 * data keys still wrapped by it can be read and rewrapped.
 */
typedef struct MasterKeySlot
{
	const char *setting;
	unsigned char *key;			/* sodium_malloc'ed, PROT_NONE */
	int			locked_pid;		/* process that last mlock'ed it */
	char		fingerprint[17];
	char		problem[256];
} MasterKeySlot;

static MasterKeySlot master_slots[2] = {
	{"privacy.master_key_command", NULL, 0, "", "privacy.master_key_command is not set"},
	{"privacy.previous_master_key_command", NULL, 0, "", "privacy.previous_master_key_command is not set"},
};

#define master_key (master_slots[0].key)
#define master_key_problem (master_slots[0].problem)

static void derive_from_slot(MasterKeySlot *slot, const char *context, uint64 subkey_id,
							 unsigned char *out, size_t outlen);

/*
 * Run the command and keep the key.  Called from _PG_init in the postmaster;
 * it must never throw, because an ERROR there stops the server.
 */
static void
load_slot(MasterKeySlot *slot, const char *command, bool required)
{
	char		buf[KEY_COMMAND_MAX_OUTPUT + 1];
	size_t		len = 0;
	FILE	   *fh;
	int			status;
	const char *why = NULL;
	unsigned char *key;

	if (command == NULL || command[0] == '\0')
	{
		if (!required)
			return;
		ereport(WARNING,
				(errmsg("privacy master key is not configured"),
				 errdetail("privacy.master_key_command is empty, so encrypted values cannot be read or written."),
				 errhint("Set privacy.master_key_command in postgresql.conf to a command that prints the 32-byte key as 64 hexadecimal characters, then restart the server.")));
		return;
	}

	fflush(NULL);
	fh = popen(command, "r");
	if (fh == NULL)
	{
		snprintf(slot->problem, sizeof(slot->problem),
				 "%s could not be started: %s",
				 slot->setting, strerror(errno));
	}
	else
	{
		size_t		n;

		while (len < sizeof(buf) - 1 &&
			   (n = fread(buf + len, 1, sizeof(buf) - 1 - len, fh)) > 0)
			len += n;
		/* drain anything longer, without keeping it */
		if (len == sizeof(buf) - 1)
		{
			char		sink[64];

			while (fread(sink, 1, sizeof(sink), fh) > 0)
				len = sizeof(buf);
			sodium_memzero(sink, sizeof(sink));
		}
		status = pclose(fh);

		if (status == -1)
			snprintf(slot->problem, sizeof(slot->problem),
					 "%s could not be waited for: %s",
					 slot->setting, strerror(errno));
		else if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
			snprintf(slot->problem, sizeof(slot->problem),
					 "%s failed with exit code %d",
					 slot->setting, WEXITSTATUS(status));
		else if (WIFSIGNALED(status))
			snprintf(slot->problem, sizeof(slot->problem),
					 "%s was terminated by signal %d",
					 slot->setting, WTERMSIG(status));
		else if (len > KEY_COMMAND_MAX_OUTPUT)
			snprintf(slot->problem, sizeof(slot->problem),
					 "%s printed more than %d bytes; it must print exactly 64 hexadecimal characters",
					 slot->setting, KEY_COMMAND_MAX_OUTPUT);
		else
		{
			key = sodium_malloc(PRIVACY_MASTER_KEY_BYTES);
			if (key == NULL)
				snprintf(slot->problem, sizeof(slot->problem),
						 "locked memory for the master key could not be allocated (check the memlock limit of the server)");
			else if (hexkey_parse(buf, len, key, &why) != 0)
			{
				snprintf(slot->problem, sizeof(slot->problem),
						 "%s output is not a key: %s", slot->setting, why);
				sodium_free(key);
			}
			else
			{
				/* sodium_malloc ignores a failed mlock; say so here */
				if (sodium_mlock(key, PRIVACY_MASTER_KEY_BYTES) != 0)
					ereport(WARNING,
							(errmsg("privacy master key could not be locked in memory"),
							 errdetail("mlock failed: %m."),
							 errhint("Raise the memlock limit of the server (LimitMEMLOCK in its systemd unit, or ulimit -l) so the key cannot be swapped to disk.")));
				slot->locked_pid = MyProcPid;
				sodium_mprotect_noaccess(key);
				slot->key = key;
				slot->problem[0] = '\0';
			}
		}
	}
	sodium_memzero(buf, sizeof(buf));

	if (slot->key == NULL)
		ereport(WARNING,
				(errmsg("privacy %s could not be loaded", slot == &master_slots[0] ? "master key" : "previous master key"),
				 errdetail("%s.", slot->problem),
				 slot == &master_slots[0] ?
				 errhint("Encrypted values cannot be read or written until the command is fixed and the server restarted.") :
				 errhint("Data keys still wrapped by the previous master key cannot be read or rewrapped until the command is fixed and the server restarted.")));
	else
	{
		unsigned char subkey[32];
		unsigned char digest[8];

		derive_from_slot(slot, "prvfprnt", 1, subkey, sizeof(subkey));
		crypto_generichash(digest, sizeof(digest), subkey, sizeof(subkey), NULL, 0);
		sodium_memzero(subkey, sizeof(subkey));
		sodium_bin2hex(slot->fingerprint, sizeof(slot->fingerprint), digest, sizeof(digest));
		ereport(LOG,
				(errmsg("privacy %s loaded (fingerprint %s)",
						slot == &master_slots[0] ? "master key" : "previous master key",
						slot->fingerprint)));
	}
}

void
keys_load_master_key(void)
{
	load_slot(&master_slots[0], privacy_master_key_command, true);
	load_slot(&master_slots[1], privacy_previous_master_key_command, false);
}



bool
keys_master_key_available(void)
{
	return master_key != NULL;
}

void
keys_require_master_key(void)
{
	if (master_key == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("privacy master key is not available"),
				 errdetail("%s.", master_key_problem),
				 errhint("Set privacy.master_key_command in postgresql.conf to a command that prints the 32-byte key as 64 hexadecimal characters, then restart the server.")));
}

/*
 * Derive a subkey for one use.  context is exactly 8 characters naming the
 * use (libsodium's KDF contract); distinct contexts give independent keys.
 */
static void
derive_from_slot(MasterKeySlot *slot, const char *context, uint64 subkey_id,
				 unsigned char *out, size_t outlen)
{
	int			rc;

	Assert(strlen(context) == crypto_kdf_CONTEXTBYTES);
	Assert(outlen >= crypto_kdf_BYTES_MIN && outlen <= crypto_kdf_BYTES_MAX);

	/*
	 * mlock is not inherited through fork(); lock the page again in this
	 * backend the first time it is used (best effort: the postmaster's lock
	 * already keeps the shared physical page resident).
	 */
	if (slot->locked_pid != MyProcPid)
	{
		(void) sodium_mlock(slot->key, PRIVACY_MASTER_KEY_BYTES);
		slot->locked_pid = MyProcPid;
	}

	sodium_mprotect_readonly(slot->key);
	rc = crypto_kdf_derive_from_key(out, outlen, subkey_id, context, slot->key);
	sodium_mprotect_noaccess(slot->key);
	if (rc != 0)
		elog(ERROR, "key derivation failed");
}

void
keys_derive(const char *context, uint64 subkey_id, unsigned char *out,
			size_t outlen)
{
	keys_require_master_key();
	derive_from_slot(&master_slots[0], context, subkey_id, out, outlen);
}

const char *
keys_master_fingerprint(void)
{
	keys_require_master_key();
	return master_slots[0].fingerprint;
}

/*
 * A short public fingerprint of the master key, so a DBA can tell which key
 * a server runs with (before a restore, during rotation) without any key
 * material leaving memory: a hash of a subkey derived for this use only.
 */
PG_FUNCTION_INFO_V1(privacy_master_key_fingerprint);
Datum
privacy_master_key_fingerprint(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(keys_master_fingerprint()));
}

PG_FUNCTION_INFO_V1(privacy_master_key_status);
Datum
privacy_master_key_status(PG_FUNCTION_ARGS)
{
	if (master_key != NULL)
		PG_RETURN_TEXT_P(cstring_to_text("loaded"));
	PG_RETURN_TEXT_P(cstring_to_text(master_key_problem));
}

/* ------------------------------------------------------------------------
 * Data keys
 *
 * Random 32-byte keys, stored in privacy.data_keys only wrapped by the
 * master key: XChaCha20-Poly1305 under a subkey derived for wrapping, with
 * the key's id, scope and owner (category or subject hash) as associated
 * data, so a wrapped key moved to another row does not unwrap.  Each row
 * records the fingerprint of the master key that wrapped it, which is how a
 * rotation tells old from new and how a restore into a cluster with another
 * master key fails with a clear message instead of an authentication error.
 *
 * Unwrapped keys live in one sodium_malloc'ed slab per backend (locked,
 * excluded from core dumps), in slots reused least-recently-used first and
 * zeroed when evicted or when any data key changes anywhere.
 * ------------------------------------------------------------------------
 */
#include "access/xact.h"
#include "utils/resowner.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#define WRAP_NONCE_BYTES crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define WRAPPED_KEY_BYTES (WRAP_NONCE_BYTES + PRIVACY_DATA_KEY_BYTES + crypto_aead_xchacha20poly1305_ietf_ABYTES)
#define KEY_CACHE_SLOTS 4096

typedef struct KeyCacheEntry
{
	uint32		key_id;
	DataKeyState state;
	char		scope;			/* 'c'ategory or 's'ubject */
	int			slot;			/* index into the slab, -1 if destroyed */
	uint64		last_used;
	unsigned char subject_hash[PRIVACY_SUBJECT_HASH_BYTES];	/* scope 's' only */
} KeyCacheEntry;

static HTAB *key_cache = NULL;
static uint64 key_cache_generation = 0;
static unsigned char *key_slab = NULL;
static uint32 slot_owner[KEY_CACHE_SLOTS];	/* key id in each slot, 0 = free */
static uint64 key_cache_tick = 0;

static void
key_cache_reset(void)
{
	HASHCTL		ctl;

	if (key_slab == NULL)
	{
		key_slab = sodium_malloc((size_t) KEY_CACHE_SLOTS * PRIVACY_DATA_KEY_BYTES);
		if (key_slab == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not allocate locked memory for the data key cache"),
					 errhint("Raise the memlock limit of the server (ulimit -l / LimitMEMLOCK).")));
	}
	sodium_memzero(key_slab, (size_t) KEY_CACHE_SLOTS * PRIVACY_DATA_KEY_BYTES);
	memset(slot_owner, 0, sizeof(slot_owner));

	if (key_cache != NULL)
		hash_destroy(key_cache);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(uint32);
	ctl.entrysize = sizeof(KeyCacheEntry);
	ctl.hcxt = TopMemoryContext;
	key_cache = hash_create("privacy data key cache", 256, &ctl,
							HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	key_cache_generation = catalog_generation;
}

static int
key_cache_take_slot(void)
{
	int			i;
	int			victim = -1;
	uint64		oldest = PG_UINT64_MAX;
	KeyCacheEntry *e;

	for (i = 0; i < KEY_CACHE_SLOTS; i++)
		if (slot_owner[i] == 0)
			return i;

	/* full: evict the least recently used key */
	for (i = 0; i < KEY_CACHE_SLOTS; i++)
	{
		e = hash_search(key_cache, &slot_owner[i], HASH_FIND, NULL);
		if (e != NULL && e->last_used < oldest)
		{
			oldest = e->last_used;
			victim = i;
		}
	}
	if (victim < 0)
		victim = 0;
	hash_search(key_cache, &slot_owner[victim], HASH_REMOVE, NULL);
	sodium_memzero(key_slab + (size_t) victim * PRIVACY_DATA_KEY_BYTES, PRIVACY_DATA_KEY_BYTES);
	slot_owner[victim] = 0;
	return victim;
}

/*
 * The associated data binding a wrapped key to its row: id, scope and owner.
 */
static size_t
wrap_ad(unsigned char *ad, uint32 key_id, char scope, const char *category,
		const unsigned char *subject_hash, size_t subject_hash_len)
{
	size_t		n = 0;
	size_t		clen = category ? strlen(category) : 0;

	memcpy(ad, "privacy data key v1", 19);
	n = 19;
	ad[n++] = (key_id >> 24) & 0xff;
	ad[n++] = (key_id >> 16) & 0xff;
	ad[n++] = (key_id >> 8) & 0xff;
	ad[n++] = key_id & 0xff;
	ad[n++] = (unsigned char) scope;
	memcpy(ad + n, category ? category : "", clen);
	n += clen;
	ad[n++] = 0;
	if (subject_hash_len > 0)
	{
		memcpy(ad + n, subject_hash, subject_hash_len);
		n += subject_hash_len;
	}
	return n;
}

static MasterKeySlot *
slot_for_fingerprint(const char *fingerprint)
{
	int			i;

	for (i = 0; i < lengthof(master_slots); i++)
		if (master_slots[i].key != NULL && strcmp(master_slots[i].fingerprint, fingerprint) == 0)
			return &master_slots[i];
	return NULL;
}

static void
wrap_key(MasterKeySlot *slot, const unsigned char *key, const unsigned char *ad, size_t adlen,
		 unsigned char *wrapped)
{
	unsigned char wrapkey[32];

	derive_from_slot(slot, "prvwrap_", 1, wrapkey, sizeof(wrapkey));
	randombytes_buf(wrapped, WRAP_NONCE_BYTES);
	crypto_aead_xchacha20poly1305_ietf_encrypt(wrapped + WRAP_NONCE_BYTES, NULL,
											   key, PRIVACY_DATA_KEY_BYTES,
											   ad, adlen, NULL, wrapped, wrapkey);
	sodium_memzero(wrapkey, sizeof(wrapkey));
}

static bool
unwrap_key(MasterKeySlot *slot, const unsigned char *wrapped, size_t wrapped_len,
		   const unsigned char *ad, size_t adlen, unsigned char *key)
{
	unsigned char wrapkey[32];
	int			rc;

	if (wrapped_len != WRAPPED_KEY_BYTES)
		return false;
	derive_from_slot(slot, "prvwrap_", 1, wrapkey, sizeof(wrapkey));
	rc = crypto_aead_xchacha20poly1305_ietf_decrypt(key, NULL, NULL,
													wrapped + WRAP_NONCE_BYTES,
													wrapped_len - WRAP_NONCE_BYTES,
													ad, adlen, wrapped, wrapkey);
	sodium_memzero(wrapkey, sizeof(wrapkey));
	return rc == 0;
}

/*
 * The keyed hash that stands for a subject wherever the identifier itself
 * must not be kept (key table, erasure records).
 */
static void internal_key(const char *name, unsigned char *out);
static uint32 subject_key(const unsigned char *subject_hash, bool create);

/*
 * The internal keys are needed per value (search tags) and per row (subject
 * hashes): keep them in locked memory, for as long as the catalog
 * generation says no key changed and no transaction that might have created
 * one aborted.
 */
static void
cached_internal_key(int which, const char *name, unsigned char *out)
{
	static unsigned char *slots = NULL;
	static uint64 generation[3] = {0, 0, 0};

	if (slots == NULL)
	{
		slots = sodium_malloc(3 * PRIVACY_DATA_KEY_BYTES);
		if (slots == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not allocate locked memory for internal keys")));
	}
	catalog_accept_invalidations();
	if (generation[which] != catalog_generation || catalog_generation == 0)
	{
		uint64		before = catalog_generation;

		internal_key(name, slots + which * PRIVACY_DATA_KEY_BYTES);
		/* creating the key moved the generation; the key is current anyway */
		generation[which] = catalog_generation;
		(void) before;
	}
	memcpy(out, slots + which * PRIVACY_DATA_KEY_BYTES, PRIVACY_DATA_KEY_BYTES);
}

void
keys_subject_hash(const char *subject, size_t len, unsigned char *out)
{
	unsigned char hkey[crypto_generichash_KEYBYTES];

	cached_internal_key(1, "subject_hash", hkey);
	crypto_generichash(out, PRIVACY_SUBJECT_HASH_BYTES, (const unsigned char *) subject, len,
					   hkey, sizeof(hkey));
	sodium_memzero(hkey, sizeof(hkey));
}

/*
 * The unwrapped key with this id, from the cache or the key table.  Returns
 * NULL, with *state = DATA_KEY_DESTROYED, for a shredded key.  The pointer
 * is valid until the next call into this file.
 */
const unsigned char *
keys_data_key(uint32 key_id, DataKeyState *state)
{
	KeyCacheEntry *entry;
	bool		found;

	keys_require_master_key();
	catalog_accept_invalidations();
	if (key_cache == NULL || key_cache_generation != catalog_generation)
		key_cache_reset();

	entry = hash_search(key_cache, &key_id, HASH_FIND, NULL);
	if (entry == NULL)
	{
		static const char *query =
			"SELECT state, wrapped_key, wrapped_by, scope, coalesce(category, name), subject_hash "
			"  FROM " PRIVACY_SCHEMA ".data_keys WHERE id OPERATOR(pg_catalog.=) $1";
		Oid			argtypes[1] = {INT4OID};
		Datum		values[1];
		CatalogUserState st;
		char	   *kstate;
		char	   *wrapped_by;
		char	   *scope;
		char	   *category;
		bytea	   *wrapped = NULL;
		bytea	   *subject_hash = NULL;
		bool		isnull;
		DataKeyState newstate;
		int			slot = -1;

		values[0] = Int32GetDatum((int32) key_id);
		catalog_become_owner(&st);
		if (SPI_execute_with_args(query, 1, argtypes, values, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "data key lookup failed");
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("encrypted value refers to data key %u, which does not exist", key_id),
					 errdetail("The value was sealed in another database, or its key table was not restored with it."),
					 errhint("Restore privacy.data_keys from the same dump as the data; values cannot be read without their key.")));

		kstate = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		wrapped_by = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
		scope = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4);
		category = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5);
		{
			Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);

			if (!isnull)
				wrapped = DatumGetByteaPCopy(d);
			d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 6, &isnull);
			if (!isnull)
				subject_hash = DatumGetByteaPCopy(d);
		}

		if (strcmp(kstate, "destroyed") == 0 || wrapped == NULL)
			newstate = DATA_KEY_DESTROYED;
		else
		{
			MasterKeySlot *mslot = slot_for_fingerprint(wrapped_by);
			unsigned char ad[19 + 4 + 1 + NAMEDATALEN + 1 + PRIVACY_SUBJECT_HASH_BYTES];
			size_t		adlen;

			newstate = strcmp(kstate, "active") == 0 ? DATA_KEY_ACTIVE : DATA_KEY_RETIRED;
			if (mslot == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("data key %u was wrapped by master key %s, but this server runs master key %s",
								key_id, wrapped_by, master_slots[0].fingerprint),
						 errdetail("Encrypted values can only be read with the master key that wrapped their data keys."),
						 errhint("Start the server with that master key in privacy.master_key_command, or, during a rotation, in privacy.previous_master_key_command.")));

			slot = key_cache_take_slot();
			adlen = wrap_ad(ad, key_id, scope[0], category,
							subject_hash ? (unsigned char *) VARDATA_ANY(subject_hash) : NULL,
							subject_hash ? VARSIZE_ANY_EXHDR(subject_hash) : 0);
			if (!unwrap_key(mslot, (unsigned char *) VARDATA_ANY(wrapped), VARSIZE_ANY_EXHDR(wrapped),
							ad, adlen, key_slab + (size_t) slot * PRIVACY_DATA_KEY_BYTES))
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("data key %u failed authentication", key_id),
						 errdetail("Its row in privacy.data_keys was altered or moved."),
						 errhint("Restore privacy.data_keys from a backup taken with the same master key.")));
			slot_owner[slot] = key_id;
		}
		catalog_restore_user(&st);

		entry = hash_search(key_cache, &key_id, HASH_ENTER, &found);
		entry->state = newstate;
		entry->scope = scope[0];
		entry->slot = slot;
		memset(entry->subject_hash, 0, PRIVACY_SUBJECT_HASH_BYTES);
		if (subject_hash != NULL && VARSIZE_ANY_EXHDR(subject_hash) == PRIVACY_SUBJECT_HASH_BYTES)
			memcpy(entry->subject_hash, VARDATA_ANY(subject_hash), PRIVACY_SUBJECT_HASH_BYTES);
	}
	entry->last_used = ++key_cache_tick;
	*state = entry->state;
	if (entry->state == DATA_KEY_DESTROYED)
		return NULL;
	return key_slab + (size_t) entry->slot * PRIVACY_DATA_KEY_BYTES;
}

/*
 * The subject hash owning a subject key the cache holds (keys_data_key has
 * just returned it), or NULL for any other key.  The access log records
 * whose values a statement opened by this hash.
 */
const unsigned char *
keys_key_subject(uint32 key_id)
{
	KeyCacheEntry *entry;

	if (key_cache == NULL || key_id == PRIVACY_TRANSIENT_KEY_ID)
		return NULL;
	entry = hash_search(key_cache, &key_id, HASH_FIND, NULL);
	if (entry == NULL || entry->scope != 's')
		return NULL;
	return entry->subject_hash;
}

bool
keys_is_category_key(uint32 key_id)
{
	DataKeyState state;
	KeyCacheEntry *entry;

	(void) keys_data_key(key_id, &state);
	entry = hash_search(key_cache, &key_id, HASH_FIND, NULL);
	return entry != NULL && entry->scope == 'c';
}

/*
 * Store a new data key unless an active one of the same owner exists;
 * false when another session's key won.  With a transaction snapshot
 * (REPEATABLE READ, SERIALIZABLE), a winner still in progress when the
 * INSERT looked, and committed since, is invisible to the INSERT's snapshot:
 * PostgreSQL refuses that with a serialization failure.  The conflict is on
 * the extension's key table, not on anything the transaction read, so it
 * is retried once in a subtransaction with a snapshot taken after the
 * winner committed, rather than failing the caller's transaction.
 */
static bool
insert_data_key(Datum *values, const char *nulls)
{
	static const char *insert =
		"INSERT INTO " PRIVACY_SCHEMA ".data_keys (id, scope, category, name, wrapped_key, subject_hash, wrapped_by) "
		"VALUES ($1, $2, CASE WHEN $2 OPERATOR(pg_catalog.=) 'category' THEN $3 END, "
		"        CASE WHEN $2 OPERATOR(pg_catalog.=) 'internal' THEN $3 END, $4, $5, $6) "
		"ON CONFLICT DO NOTHING RETURNING id";
	Oid			argtypes[6] = {INT4OID, TEXTOID, TEXTOID, BYTEAOID, BYTEAOID, TEXTOID};
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool retry = false;
	volatile int rc = 0;

	if (!IsolationUsesXactSnapshot())
		rc = catalog_execute_latest(insert, 6, argtypes, values, nulls, false, 1);
	else
	{
		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(cxt);
		PG_TRY();
		{
			rc = catalog_execute_latest(insert, 6, argtypes, values, nulls, false, 1);
			ReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(cxt);
			edata = CopyErrorData();
			FlushErrorState();
			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = owner;
			if (edata->sqlerrcode != ERRCODE_T_R_SERIALIZATION_FAILURE)
				ReThrowError(edata);
			FreeErrorData(edata);
			retry = true;
		}
		PG_END_TRY();
		if (retry)
			rc = catalog_execute_latest(insert, 6, argtypes, values, nulls, false, 1);
	}
	if (rc != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not store a data key");
	return SPI_processed > 0;
}

/*
 * Called before a data key is created here: a part that knows better where
 * keys come from (citus.c) returns the id of the key it had made, or 0.
 */
uint32		(*keys_create_hook) (char scope, const char *name, const unsigned char *subject_hash) = NULL;

/*
 * Create a data key and store it wrapped.  For a category key, when another
 * session created the active key first, that key's id is returned instead.
 */
static uint32
create_data_key(char scope, const char *category, const unsigned char *subject_hash)
{
	unsigned char *key;
	unsigned char wrapped[WRAPPED_KEY_BYTES];
	unsigned char ad[19 + 4 + 1 + NAMEDATALEN + 1 + PRIVACY_SUBJECT_HASH_BYTES];
	size_t		adlen;
	uint32		key_id;
	CatalogUserState st;
	Datum		values[6];
	Oid			argtypes[6] = {INT4OID, TEXTOID, TEXTOID, BYTEAOID, BYTEAOID, TEXTOID};
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	bytea	   *wrapped_b;
	bytea	   *hash_b = NULL;
	bool		isnull;
	int			rc;

	keys_require_master_key();
	if (RecoveryInProgress() || XactReadOnly)
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot create a data key in a read-only transaction"),
				 scope == 'i' ?
				 errdetail("The extension's internal key \"%s\" does not exist yet, and creating it writes privacy.data_keys.", category) :
				 errdetail("The %s has no key yet, and creating one writes privacy.data_keys.",
						   scope == 'c' ? "category" : "subject"),
				 errhint("Seal a first value in a read-write transaction on the primary (privacy.classify() creates the category key).")));

	/* on Citus, the coordinator creates every key (citus.c) */
	if (keys_create_hook && (key_id = keys_create_hook(scope, category, subject_hash)) != 0)
		return key_id;

	catalog_become_owner(&st);
	if (SPI_execute("SELECT pg_catalog.nextval('" PRIVACY_SCHEMA ".data_key_id_seq')", false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not allocate a data key id");
	key_id = (uint32) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	key = sodium_malloc(PRIVACY_DATA_KEY_BYTES);
	if (key == NULL)
		elog(ERROR, "could not allocate locked memory for a data key");
	randombytes_buf(key, PRIVACY_DATA_KEY_BYTES);
	adlen = wrap_ad(ad, key_id, scope, category, subject_hash,
					subject_hash ? PRIVACY_SUBJECT_HASH_BYTES : 0);
	wrap_key(&master_slots[0], key, ad, adlen, wrapped);
	sodium_free(key);

	wrapped_b = palloc(VARHDRSZ + WRAPPED_KEY_BYTES);
	SET_VARSIZE(wrapped_b, VARHDRSZ + WRAPPED_KEY_BYTES);
	memcpy(VARDATA(wrapped_b), wrapped, WRAPPED_KEY_BYTES);
	if (subject_hash)
	{
		hash_b = palloc(VARHDRSZ + PRIVACY_SUBJECT_HASH_BYTES);
		SET_VARSIZE(hash_b, VARHDRSZ + PRIVACY_SUBJECT_HASH_BYTES);
		memcpy(VARDATA(hash_b), subject_hash, PRIVACY_SUBJECT_HASH_BYTES);
	}

	values[0] = Int32GetDatum((int32) key_id);
	values[1] = CStringGetTextDatum(scope == 'c' ? "category" : scope == 's' ? "subject" : "internal");
	if (category)
		values[2] = CStringGetTextDatum(category);
	else
		nulls[2] = 'n';
	values[3] = PointerGetDatum(wrapped_b);
	if (hash_b)
		values[4] = PointerGetDatum(hash_b);
	else
		nulls[4] = 'n';
	values[5] = CStringGetTextDatum(master_slots[0].fingerprint);

	/* the partial unique indexes allow one active key per category or subject */
	if (!insert_data_key(values, nulls))
	{
		/* another session won the race: use its key */
		if (scope == 'c' || scope == 'i')
			rc = catalog_execute_latest(
				"SELECT id FROM " PRIVACY_SCHEMA ".data_keys WHERE scope OPERATOR(pg_catalog.=) $2 "
				"AND coalesce(category, name) OPERATOR(pg_catalog.=) $3 "
				"AND state OPERATOR(pg_catalog.=) 'active'",
				3, argtypes, values, nulls, true, 1);
		else
			rc = catalog_execute_latest(
				"SELECT id FROM " PRIVACY_SCHEMA ".data_keys WHERE scope OPERATOR(pg_catalog.=) 'subject' "
				"AND subject_hash OPERATOR(pg_catalog.=) $5 AND state OPERATOR(pg_catalog.=) 'active'",
				5, argtypes, values, nulls, true, 1);
		if (rc != SPI_OK_SELECT || SPI_processed == 0)
			elog(ERROR, "could not find the concurrently created data key");
		key_id = (uint32) DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	catalog_restore_user(&st);
	return key_id;
}

/*
 * Which key seals new values of a category, or of a subject: looked up once
 * per catalog generation and remembered.
 */
typedef struct ActiveKeyEntry
{
	unsigned char owner[PRIVACY_SUBJECT_HASH_BYTES + 1];	/* 'c'+category id, or 's'+subject hash */
	uint32		key_id;
} ActiveKeyEntry;

static HTAB *active_keys = NULL;
static uint64 active_keys_generation = 0;

static ActiveKeyEntry *
active_key_lookup(const unsigned char *owner, bool *found)
{
	catalog_accept_invalidations();
	if (active_keys == NULL || active_keys_generation != catalog_generation)
	{
		HASHCTL		ctl;

		if (active_keys != NULL)
			hash_destroy(active_keys);
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = PRIVACY_SUBJECT_HASH_BYTES + 1;
		ctl.entrysize = sizeof(ActiveKeyEntry);
		ctl.hcxt = TopMemoryContext;
		active_keys = hash_create("privacy active key cache", 256, &ctl,
								  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		active_keys_generation = catalog_generation;
	}
	return hash_search(active_keys, owner, HASH_ENTER, found);
}

/*
 * The id of the active key found by a one-parameter query on
 * privacy.data_keys (0 if there is none), read as the extension owner.
 */
static uint32
lookup_active_key(const char *query, Oid argtype, Datum value)
{
	CatalogUserState st;
	bool		isnull;
	uint32		key_id = 0;

	catalog_become_owner(&st);
	if (SPI_execute_with_args(query, 1, &argtype, &value, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "data key lookup failed");
	if (SPI_processed > 0)
		key_id = (uint32) DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	catalog_restore_user(&st);
	return key_id;
}

uint32
keys_category_key(const char *category)
{
	unsigned char owner[PRIVACY_SUBJECT_HASH_BYTES + 1];
	uint16		cid = catalog_category_id(category);
	ActiveKeyEntry *entry;
	bool		found;

	memset(owner, 0, sizeof(owner));
	owner[0] = 'c';
	owner[1] = cid >> 8;
	owner[2] = cid & 0xff;
	entry = active_key_lookup(owner, &found);
	if (!found)
	{
		static const char *query =
			"SELECT id FROM " PRIVACY_SCHEMA ".data_keys WHERE scope OPERATOR(pg_catalog.=) 'category' "
			"AND category OPERATOR(pg_catalog.=) $1 AND state OPERATOR(pg_catalog.=) 'active'";
		uint32		key_id;

		entry->key_id = 0;
		key_id = lookup_active_key(query, TEXTOID, CStringGetTextDatum(category));
		if (key_id == 0)
			key_id = create_data_key('c', category, NULL);
		/* the hash may have been rebuilt while the catalog was read */
		entry = active_key_lookup(owner, &found);
		entry->key_id = key_id;
	}
	return entry->key_id;
}

/* The active key of a subject; 0 if it has none and create is false. */
uint32
keys_subject_key(const char *subject, size_t len, bool create)
{
	unsigned char hash[PRIVACY_SUBJECT_HASH_BYTES];

	keys_subject_hash(subject, len, hash);
	return subject_key(hash, create);
}

/* The same, for a subject known by its hash (created if need be). */
uint32
keys_subject_key_by_hash(const unsigned char *subject_hash)
{
	return subject_key(subject_hash, true);
}

static uint32
subject_key(const unsigned char *subject_hash, bool create)
{
	unsigned char owner[PRIVACY_SUBJECT_HASH_BYTES + 1];
	ActiveKeyEntry *entry;
	bool		found;

	owner[0] = 's';
	memcpy(owner + 1, subject_hash, PRIVACY_SUBJECT_HASH_BYTES);
	entry = active_key_lookup(owner, &found);
	if (!found || entry->key_id == 0)
	{
		static const char *query =
			"SELECT id FROM " PRIVACY_SCHEMA ".data_keys WHERE scope OPERATOR(pg_catalog.=) 'subject' "
			"AND subject_hash OPERATOR(pg_catalog.=) $1 AND state OPERATOR(pg_catalog.=) 'active'";
		uint32		key_id;
		bytea	   *h = palloc(VARHDRSZ + PRIVACY_SUBJECT_HASH_BYTES);

		entry->key_id = 0;
		SET_VARSIZE(h, VARHDRSZ + PRIVACY_SUBJECT_HASH_BYTES);
		memcpy(VARDATA(h), owner + 1, PRIVACY_SUBJECT_HASH_BYTES);
		key_id = lookup_active_key(query, BYTEAOID, PointerGetDatum(h));
		if (key_id == 0 && create)
			key_id = create_data_key('s', NULL, owner + 1);
		entry = active_key_lookup(owner, &found);
		entry->key_id = key_id;
	}
	return entry->key_id;
}

/* ------------------------------------------------------------------------
 * SQL-callable key management (privileges are granted in the install script)
 * ------------------------------------------------------------------------
 */
PG_FUNCTION_INFO_V1(privacy_category_key);
Datum
privacy_category_key(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32((int32) keys_category_key(text_to_cstring(PG_GETARG_TEXT_PP(0))));
}

PG_FUNCTION_INFO_V1(privacy_subject_key);
Datum
privacy_subject_key(PG_FUNCTION_ARGS)
{
	text	   *subject = PG_GETARG_TEXT_PP(0);
	bool		create = PG_GETARG_BOOL(1);
	uint32		id = keys_subject_key(VARDATA_ANY(subject), VARSIZE_ANY_EXHDR(subject), create);

	if (id == 0)
		PG_RETURN_NULL();
	PG_RETURN_INT32((int32) id);
}

PG_FUNCTION_INFO_V1(privacy_subject_hash);
Datum
privacy_subject_hash(PG_FUNCTION_ARGS)
{
	text	   *subject = PG_GETARG_TEXT_PP(0);
	bytea	   *out = palloc(VARHDRSZ + PRIVACY_SUBJECT_HASH_BYTES);

	SET_VARSIZE(out, VARHDRSZ + PRIVACY_SUBJECT_HASH_BYTES);
	keys_subject_hash(VARDATA_ANY(subject), VARSIZE_ANY_EXHDR(subject), (unsigned char *) VARDATA(out));
	PG_RETURN_BYTEA_P(out);
}

/*
 * Rewrap one data key under the current master key: called by
 * privacy.rotate_master_key() for each key wrapped by the previous one.
 * Returns the new wrapped bytes; the key never leaves this function.
 */
PG_FUNCTION_INFO_V1(privacy_rewrap_key);
Datum
privacy_rewrap_key(PG_FUNCTION_ARGS)
{
	uint32		key_id = (uint32) PG_GETARG_INT32(0);
	char	   *scope = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *category = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	bytea	   *subject_hash = PG_ARGISNULL(3) ? NULL : PG_GETARG_BYTEA_PP(3);
	bytea	   *wrapped = PG_GETARG_BYTEA_PP(4);
	char	   *wrapped_by = text_to_cstring(PG_GETARG_TEXT_PP(5));
	MasterKeySlot *from = slot_for_fingerprint(wrapped_by);
	unsigned char ad[19 + 4 + 1 + NAMEDATALEN + 1 + PRIVACY_SUBJECT_HASH_BYTES];
	size_t		adlen;
	unsigned char *key;
	bytea	   *out;

	keys_require_master_key();
	if (from == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("data key %u was wrapped by master key %s, which is not loaded", key_id, wrapped_by),
				 errhint("Set privacy.previous_master_key_command to the command that prints that key and restart the server.")));
	adlen = wrap_ad(ad, key_id, scope[0], category,
					subject_hash ? (unsigned char *) VARDATA_ANY(subject_hash) : NULL,
					subject_hash ? VARSIZE_ANY_EXHDR(subject_hash) : 0);
	key = sodium_malloc(PRIVACY_DATA_KEY_BYTES);
	if (key == NULL)
		elog(ERROR, "could not allocate locked memory for a data key");
	if (!unwrap_key(from, (unsigned char *) VARDATA_ANY(wrapped), VARSIZE_ANY_EXHDR(wrapped), ad, adlen, key))
	{
		sodium_free(key);
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("data key %u failed authentication", key_id),
				 errdetail("Its row in privacy.data_keys was altered or moved.")));
	}
	out = palloc(VARHDRSZ + WRAPPED_KEY_BYTES);
	SET_VARSIZE(out, VARHDRSZ + WRAPPED_KEY_BYTES);
	wrap_key(&master_slots[0], key, ad, adlen, (unsigned char *) VARDATA(out));
	sodium_free(key);
	PG_RETURN_BYTEA_P(out);
}

PG_FUNCTION_INFO_V1(privacy_previous_master_key_fingerprint);
Datum
privacy_previous_master_key_fingerprint(PG_FUNCTION_ARGS)
{
	if (master_slots[1].key == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(master_slots[1].fingerprint));
}

/*
 * The transient key: random, per backend, never stored.  Values typed in a
 * statement without a known column (literals, parameters: the type modifier
 * is not passed to input functions there) are sealed with it, and resealed
 * under the column's key by the type-modifier coercion on assignment.  A
 * transient value cannot outlive its backend, which is why no column may
 * keep them (see the event trigger in the install script).
 */
static unsigned char *transient_key = NULL;

const unsigned char *
keys_transient_key(void)
{
	if (transient_key == NULL)
	{
		transient_key = sodium_malloc(PRIVACY_DATA_KEY_BYTES);
		if (transient_key == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not allocate locked memory for the transient key")));
		randombytes_buf(transient_key, PRIVACY_DATA_KEY_BYTES);
	}
	return transient_key;
}

/*
 * The key of the blind index used for equality search: one per database
 * (an internal data key, so it survives master-key rotation and travels with
 * a dump), so equal plaintexts in any searchable columns compare equal
 * (joins work), and nobody without the master key can test a guess.
 */
void
keys_search_key(unsigned char *out, size_t outlen)
{
	Assert(outlen == crypto_generichash_KEYBYTES);
	cached_internal_key(0, "search", out);
}

/*
 * Internal keys: random keys stored wrapped like every data key, for uses
 * that must not change when the master key rotates (the subject hash, the
 * blind index).  Created on first use; privacy.classify() and
 * privacy.create_category() create them early, in a writable transaction.
 */
uint32
keys_internal_key_id(const char *name)
{
	static const char *query =
		"SELECT id FROM " PRIVACY_SCHEMA ".data_keys WHERE scope OPERATOR(pg_catalog.=) 'internal' "
		"AND name OPERATOR(pg_catalog.=) $1 AND state OPERATOR(pg_catalog.=) 'active'";
	uint32		key_id;

	key_id = lookup_active_key(query, TEXTOID, CStringGetTextDatum(name));
	if (key_id == 0)
		key_id = create_data_key('i', name, NULL);
	return key_id;
}

static void
internal_key(const char *name, unsigned char *out)
{
	uint32		key_id = keys_internal_key_id(name);
	const unsigned char *key;
	DataKeyState state;

	key = keys_data_key(key_id, &state);
	if (key == NULL)
		elog(ERROR, "internal key \"%s\" is destroyed", name);
	memcpy(out, key, PRIVACY_DATA_KEY_BYTES);
}

/*
 * The key of the access log's MAC chain: an internal data key, so that the
 * chain still verifies after a master-key rotation and after a restore.
 */
void
keys_access_log_key(unsigned char *out)
{
	cached_internal_key(2, "access_log", out);
}

PG_FUNCTION_INFO_V1(privacy_ensure_internal_keys);
Datum
privacy_ensure_internal_keys(PG_FUNCTION_ARGS)
{
	unsigned char k[PRIVACY_DATA_KEY_BYTES];

	keys_require_master_key();
	internal_key("subject_hash", k);
	internal_key("search", k);
	internal_key("access_log", k);
	sodium_memzero(k, sizeof(k));
	PG_RETURN_VOID();
}
