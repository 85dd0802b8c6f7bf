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
#include "hexkey.h"
#include "utils/builtins.h"

/* Output longer than this cannot be a key; reading stops there. */
#define KEY_COMMAND_MAX_OUTPUT 256

static unsigned char *master_key = NULL;	/* sodium_malloc'ed, PROT_NONE */
static bool master_key_locked_here = false;
static char master_key_problem[256] = "privacy.master_key_command is not set";

/*
 * Run the command and keep the key.  Called from _PG_init in the postmaster;
 * it must never throw, because an ERROR there stops the server.
 */
void
keys_load_master_key(void)
{
	char		buf[KEY_COMMAND_MAX_OUTPUT + 1];
	size_t		len = 0;
	FILE	   *fh;
	int			status;
	const char *why = NULL;
	unsigned char *key;

	if (privacy_master_key_command == NULL || privacy_master_key_command[0] == '\0')
	{
		ereport(WARNING,
				(errmsg("privacy master key is not configured"),
				 errdetail("privacy.master_key_command is empty, so encrypted values cannot be read or written."),
				 errhint("Set privacy.master_key_command in postgresql.conf to a command that prints the 32-byte key as 64 hexadecimal characters, then restart the server.")));
		return;
	}

	fflush(NULL);
	fh = popen(privacy_master_key_command, "r");
	if (fh == NULL)
	{
		snprintf(master_key_problem, sizeof(master_key_problem),
				 "privacy.master_key_command could not be started: %s",
				 strerror(errno));
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
			snprintf(master_key_problem, sizeof(master_key_problem),
					 "privacy.master_key_command could not be waited for: %s",
					 strerror(errno));
		else if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
			snprintf(master_key_problem, sizeof(master_key_problem),
					 "privacy.master_key_command failed with exit code %d",
					 WEXITSTATUS(status));
		else if (WIFSIGNALED(status))
			snprintf(master_key_problem, sizeof(master_key_problem),
					 "privacy.master_key_command was terminated by signal %d",
					 WTERMSIG(status));
		else if (len > KEY_COMMAND_MAX_OUTPUT)
			snprintf(master_key_problem, sizeof(master_key_problem),
					 "privacy.master_key_command printed more than %d bytes; it must print exactly 64 hexadecimal characters",
					 KEY_COMMAND_MAX_OUTPUT);
		else
		{
			key = sodium_malloc(PRIVACY_MASTER_KEY_BYTES);
			if (key == NULL)
				snprintf(master_key_problem, sizeof(master_key_problem),
						 "locked memory for the master key could not be allocated (check the memlock limit of the server)");
			else if (hexkey_parse(buf, len, key, &why) != 0)
			{
				snprintf(master_key_problem, sizeof(master_key_problem),
						 "privacy.master_key_command output is not a key: %s", why);
				sodium_free(key);
			}
			else
			{
				sodium_mprotect_noaccess(key);
				master_key = key;
				master_key_problem[0] = '\0';
			}
		}
	}
	sodium_memzero(buf, sizeof(buf));

	if (master_key == NULL)
		ereport(WARNING,
				(errmsg("privacy master key could not be loaded"),
				 errdetail("%s.", master_key_problem),
				 errhint("Encrypted values cannot be read or written until the command is fixed and the server restarted.")));
	else
		ereport(LOG,
				(errmsg("privacy master key loaded")));
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
void
keys_derive(const char *context, uint64 subkey_id, unsigned char *out,
			size_t outlen)
{
	int			rc;

	Assert(strlen(context) == crypto_kdf_CONTEXTBYTES);
	Assert(outlen >= crypto_kdf_BYTES_MIN && outlen <= crypto_kdf_BYTES_MAX);
	keys_require_master_key();

	/*
	 * mlock is not inherited through fork(); lock the page again in this
	 * backend the first time it is used (best effort: the postmaster's lock
	 * already keeps the shared physical page resident).
	 */
	if (!master_key_locked_here)
	{
		(void) sodium_mlock(master_key, PRIVACY_MASTER_KEY_BYTES);
		master_key_locked_here = true;
	}

	sodium_mprotect_readonly(master_key);
	rc = crypto_kdf_derive_from_key(out, outlen, subkey_id, context, master_key);
	sodium_mprotect_noaccess(master_key);
	if (rc != 0)
		elog(ERROR, "key derivation failed");
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
	unsigned char subkey[32];
	unsigned char digest[8];
	char		hex[2 * sizeof(digest) + 1];

	keys_derive("prvfprnt", 1, subkey, sizeof(subkey));
	crypto_generichash(digest, sizeof(digest), subkey, sizeof(subkey), NULL, 0);
	sodium_memzero(subkey, sizeof(subkey));
	sodium_bin2hex(hex, sizeof(hex), digest, sizeof(digest));
	PG_RETURN_TEXT_P(cstring_to_text(hex));
}

PG_FUNCTION_INFO_V1(privacy_master_key_status);
Datum
privacy_master_key_status(PG_FUNCTION_ARGS)
{
	if (master_key != NULL)
		PG_RETURN_TEXT_P(cstring_to_text("loaded"));
	PG_RETURN_TEXT_P(cstring_to_text(master_key_problem));
}
