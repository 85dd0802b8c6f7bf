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
#include "keys.h"

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


PG_FUNCTION_INFO_V1(privacy_previous_master_key_fingerprint);
Datum
privacy_previous_master_key_fingerprint(PG_FUNCTION_ARGS)
{
	if (master_slots[1].key == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(master_slots[1].fingerprint));
}

/* ------------------------------------------------------------------------
 * Wrapping data keys
 *
 * A data key is stored only wrapped by the master key: XChaCha20-Poly1305
 * under a subkey derived for wrapping ("prvwrap_"), with the key's id,
 * scope and owner (category, internal name or subject hash) as associated
 * data, so a wrapped key moved to another row does not unwrap.  Each
 * backend derives the wrapping subkey of a master key slot once and keeps it
 * in locked memory: deriving it unlocks the master key's page, two system
 * calls, which a new subject's key must not pay.
 * ------------------------------------------------------------------------
 */
static unsigned char *wrapping_keys = NULL;	/* sodium_malloc'ed, one per slot */
static bool wrapping_key_ready[lengthof(master_slots)];

int
keys_master_slot(const char *fingerprint)
{
	int			i;

	for (i = 0; i < lengthof(master_slots); i++)
		if (master_slots[i].key != NULL && strcmp(master_slots[i].fingerprint, fingerprint) == 0)
			return i;
	return -1;
}

static const unsigned char *
wrapping_key(int slot)
{
	if (wrapping_keys == NULL)
	{
		wrapping_keys = sodium_malloc(lengthof(master_slots) * 32);
		if (wrapping_keys == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not allocate locked memory for the key-wrapping keys")));
	}
	if (!wrapping_key_ready[slot])
	{
		derive_from_slot(&master_slots[slot], "prvwrap_", 1, wrapping_keys + slot * 32, 32);
		wrapping_key_ready[slot] = true;
	}
	return wrapping_keys + slot * 32;
}

/*
 * The associated data binding a wrapped key to its row: id, scope and owner.
 */
size_t
keys_wrap_ad(unsigned char *ad, uint32 key_id, char scope, const char *name,
			 const unsigned char *subject_hash, size_t subject_hash_len)
{
	size_t		n = 0;
	size_t		clen = name ? strlen(name) : 0;

	memcpy(ad, "privacy data key v1", 19);
	n = 19;
	ad[n++] = (key_id >> 24) & 0xff;
	ad[n++] = (key_id >> 16) & 0xff;
	ad[n++] = (key_id >> 8) & 0xff;
	ad[n++] = key_id & 0xff;
	ad[n++] = (unsigned char) scope;
	memcpy(ad + n, name ? name : "", clen);
	n += clen;
	ad[n++] = 0;
	if (subject_hash_len > 0)
	{
		memcpy(ad + n, subject_hash, subject_hash_len);
		n += subject_hash_len;
	}
	return n;
}

void
keys_wrap(int slot, const unsigned char *key, const unsigned char *ad, size_t adlen,
		  unsigned char *wrapped)
{
	randombytes_buf(wrapped, KEYS_WRAP_NONCE_BYTES);
	crypto_aead_xchacha20poly1305_ietf_encrypt(wrapped + KEYS_WRAP_NONCE_BYTES, NULL,
											   key, PRIVACY_DATA_KEY_BYTES,
											   ad, adlen, NULL, wrapped, wrapping_key(slot));
}

bool
keys_unwrap(int slot, const unsigned char *wrapped, size_t wrapped_len,
			const unsigned char *ad, size_t adlen, unsigned char *key)
{
	if (wrapped_len != KEYS_WRAPPED_BYTES)
		return false;
	return crypto_aead_xchacha20poly1305_ietf_decrypt(key, NULL, NULL,
													  wrapped + KEYS_WRAP_NONCE_BYTES,
													  wrapped_len - KEYS_WRAP_NONCE_BYTES,
													  ad, adlen, wrapped, wrapping_key(slot)) == 0;
}

void
keys_random_key(unsigned char *key)
{
	randombytes_buf(key, PRIVACY_DATA_KEY_BYTES);
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
	int			from = keys_master_slot(wrapped_by);
	unsigned char ad[KEYS_AD_MAX];
	size_t		adlen;
	unsigned char *key;
	bytea	   *out;

	keys_require_master_key();
	if (from < 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("data key %u was wrapped by master key %s, which is not loaded", key_id, wrapped_by),
				 errhint("Set privacy.previous_master_key_command to the command that prints that key and restart the server.")));
	adlen = keys_wrap_ad(ad, key_id, scope[0], category,
						 subject_hash ? (unsigned char *) VARDATA_ANY(subject_hash) : NULL,
						 subject_hash ? VARSIZE_ANY_EXHDR(subject_hash) : 0);
	key = sodium_malloc(PRIVACY_DATA_KEY_BYTES);
	if (key == NULL)
		elog(ERROR, "could not allocate locked memory for a data key");
	if (!keys_unwrap(from, (unsigned char *) VARDATA_ANY(wrapped), VARSIZE_ANY_EXHDR(wrapped), ad, adlen, key))
	{
		sodium_free(key);
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("data key %u failed authentication", key_id),
				 errdetail("Its row in privacy.data_keys was altered or moved.")));
	}
	out = palloc(VARHDRSZ + KEYS_WRAPPED_BYTES);
	SET_VARSIZE(out, VARHDRSZ + KEYS_WRAPPED_BYTES);
	keys_wrap(0, key, ad, adlen, (unsigned char *) VARDATA(out));
	sodium_free(key);
	PG_RETURN_BYTEA_P(out);
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
