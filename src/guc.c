/*
 * guc.c — every privacy.* setting, defined in one place, alphabetically.
 *
 * Anything that could weaken protection is superuser-only; the master key
 * command is additionally hidden from non-superusers (it may name a vault or
 * carry a token).  privacy.purpose is the one setting applications use.
 */
#include "privacy.h"

#include <limits.h>


#include "utils/guc.h"
#include "keys.h"

char	   *privacy_master_key_command = NULL;
char	   *privacy_portal_subject = NULL;
char	   *privacy_previous_master_key_command = NULL;
char	   *privacy_purpose = NULL;
int			privacy_on_denied = ON_DENIED_ERROR;
int			privacy_purge_batch_size = 10000;
int			privacy_purge_interval = 3600;
int			privacy_purge_workers = 2;
int			privacy_reseal_delay = 0;
char	   *privacy_worker_database = NULL;
bool		privacy_access_log = true;
bool		privacy_access_log_strict = false;
int			privacy_access_log_queue_size = 2048;
int			privacy_access_log_flush_interval = 200;
int			privacy_access_log_retention = 365 * 24 * 60;
int			privacy_access_log_databases = 4;

static const struct config_enum_entry on_denied_options[] = {
	{"error", ON_DENIED_ERROR, false},
	{"mask", ON_DENIED_MASK, false},
	{NULL, 0, false}
};

/*
 * A purpose name is a lower-case identifier; refusing anything else at SET
 * time gives the application developer the error where the mistake is.
 * Whether the purpose exists is checked when it is used, because SET may run
 * outside a transaction where the catalog cannot be read.
 */
static bool
check_purpose(char **newval, void **extra, GucSource source)
{
	const char *p = *newval;

	if (p == NULL || p[0] == '\0')
		return true;
	if (strlen(p) >= NAMEDATALEN)
	{
		GUC_check_errdetail("A purpose name is at most %d bytes long.", NAMEDATALEN - 1);
		return false;
	}
	if (!(*p >= 'a' && *p <= 'z'))
	{
		GUC_check_errdetail("A purpose name starts with a lower-case letter.");
		GUC_check_errhint("Use the name exactly as it appears in privacy.my_purposes.");
		return false;
	}
	for (; *p; p++)
	{
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
		{
			GUC_check_errdetail("A purpose name consists of lower-case letters, digits and underscores.");
			GUC_check_errhint("Use the name exactly as it appears in privacy.my_purposes.");
			return false;
		}
	}
	return true;
}

void
guc_define(void)
{
	DefineCustomIntVariable("privacy.backend_key_cache_size",
							"Unwrapped data keys a backend keeps for itself.",
							"Each takes 80 bytes of locked memory (rounded up to a power of two keys). Keys a backend "
							"does not hold are taken from the shared key cache, else unwrapped from privacy.data_keys.",
							&privacy_backend_key_cache_size,
							4096, 16, 1024 * 1024,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("privacy.consent_cache_size",
							"Consent states a backend keeps between statements for the consent check of protected tables.",
							"Each entry is one subject and purpose (about 60 bytes). A statement that needs more reads "
							"the rest from privacy.consent_state; 0 keeps nothing between statements.",
							&privacy_consent_cache_size,
							200000, 0, INT_MAX / 2,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("privacy.consent_changes",
							"Consent changes remembered in shared memory for other backends' caches.",
							"A backend that falls further behind empties its consent cache. "
							"Each entry takes 40 bytes of shared memory; takes effect at the next restart.",
							&privacy_consent_changes,
							65536, 1024, INT_MAX / 64,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("privacy.master_key_command",
							   "Shell command that prints the 32-byte master key as 64 hexadecimal characters.",
							   "Run once when the server starts; the key is kept in locked memory and never written anywhere. "
							   "Changing it takes effect at the next restart.",
							   &privacy_master_key_command,
							   "",
							   PGC_POSTMASTER,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomEnumVariable("privacy.on_denied",
							 "What reading an encrypted value without a suitable purpose gives: an error, or a masked value.",
							 "error stops the statement with the reason; mask returns ******** (text) or an empty bytea, "
							 "which hides the refusal from the application and is therefore superuser-only.",
							 &privacy_on_denied,
							 ON_DENIED_ERROR,
							 on_denied_options,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("privacy.portal_subject",
							   "The customer a self-service application acts for, as the subject's text form.",
							   "The application sets it once it has authenticated the customer, with SET LOCAL for one transaction; "
							   "the privacy.portal_* functions act on this subject and on no other.",
							   &privacy_portal_subject,
							   "",
							   PGC_USERSET,
							   0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("privacy.previous_master_key_command",
							   "Shell command that prints the previous master key, during a master-key rotation.",
							   "Set it to the old key's command, set privacy.master_key_command to the new one, restart, "
							   "run SELECT privacy.rotate_master_key(), then clear this setting.",
							   &privacy_previous_master_key_command,
							   "",
							   PGC_POSTMASTER,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("privacy.purge_batch_size",
							"Rows a purge worker deletes or anonymizes per committed batch.",
							NULL,
							&privacy_purge_batch_size,
							10000, 1, 1000000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("privacy.purge_interval",
							"Time between two purges of a database by the purge workers; 0 turns them off.",
							"Every database where the extension is installed is purged once per interval, counted from "
							"the start of its last completed purge, whoever ran it.",
							&privacy_purge_interval,
							3600, 0, 365 * 24 * 3600,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("privacy.reseal_delay",
							"Pause after each committed batch of CALL privacy.reseal() and privacy.reencrypt().",
							"Leaves the processor and the disk to the application between batches, as "
							"vacuum_cost_delay does for VACUUM; 0 reseals without pausing.",
							&privacy_reseal_delay,
							0, 0, 10000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("privacy.purge_workers",
							"Purge workers that may run at the same time, each in one database.",
							"Each takes a background worker slot (max_worker_processes) while it runs.",
							&privacy_purge_workers,
							2, 1, PRIVACY_MAX_PURGE_WORKERS,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("privacy.purpose",
							   "Why this session or transaction processes personal data.",
							   "Personal data is shown only for a declared purpose that the current role holds "
							   "and that is allowed the data's category. Use SET LOCAL for one transaction.",
							   &privacy_purpose,
							   "",
							   PGC_USERSET,
							   0,
							   check_purpose, NULL, NULL);

	DefineCustomIntVariable("privacy.shared_key_cache_size",
							"Unwrapped data keys kept in shared memory for all backends; 0 turns the shared cache off.",
							"Each takes about 100 bytes of memory that the postmaster locks (the memlock limit must allow it) and "
							"excludes from core dumps. Size it to the subjects whose data is read in a day. Takes effect at the next restart.",
							&privacy_shared_key_cache_size,
							65536, 0, INT_MAX / 128,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("privacy.worker_database",
							   "No longer used: purges run in every database where the extension is installed.",
							   "Kept so that a postgresql.conf from 0.2 still loads; the purge launcher warns when it is set.",
							   &privacy_worker_database,
							   "",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);

	DefineCustomBoolVariable("privacy.access_log",
							 "Records every access to a protected table in privacy.access_log.",
							 "Set in postgresql.conf (or ALTER SYSTEM) only, so that switching it off is a reload the server log records, never a SET.",
							 &privacy_access_log,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("privacy.citus_batch_keys",
							 "On a Citus coordinator, creates the missing keys of a multi-row INSERT's subjects in one request.",
							 "Off: each worker asks the coordinator for each new subject's key as it seals the row (one round trip per subject).",
							 &privacy_citus_batch_keys,
							 true,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("privacy.access_log_strict",
							 "Makes a statement on a protected table wait until its access events are durable.",
							 "Off: events reach the disk within privacy.access_log_flush_interval, and a server crash can lose that much. "
							 "On: a statement's result completes only once its events are committed.",
							 &privacy_access_log_strict,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("privacy.access_log_queue_size",
							"Shared memory for access events on their way to the log, per database.",
							"When it is full, statements wait (wait event Extension) until the writer has made room.",
							&privacy_access_log_queue_size,
							2048, 512, 1024 * 1024,
							PGC_POSTMASTER,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("privacy.access_log_flush_interval",
							"How long access events may wait in shared memory before the writer commits them.",
							"This is the most a server crash can lose of the log when privacy.access_log_strict is off.",
							&privacy_access_log_flush_interval,
							200, 1, 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("privacy.access_log_retention",
							"How long access events are kept; 0 keeps them forever.",
							"Older events are deleted by CALL privacy.purge() and the purge workers; the deletion is recorded so that privacy.verify_access_log() still passes.",
							&privacy_access_log_retention,
							365 * 24 * 60, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MIN,
							NULL, NULL, NULL);

	DefineCustomIntVariable("privacy.access_log_databases",
							"How many databases can log access events at the same time.",
							"Each gets a queue of privacy.access_log_queue_size and a writer worker while it has events.",
							&privacy_access_log_databases,
							4, 1, 64,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("privacy");
}
