/*
 * privacy.c — entry point of privacy.so.
 *
 * _PG_init only wires the parts together (see doc/internals.md for the map):
 *   catalog.c   the extension's tables seen from C: owner context, cache
 *               invalidation, category ids
 *   memo.c      what purge and erasure derive from the catalogs (the
 *               foreign-key graph), kept per session
 *   keys.c      master key and wrapping data keys
 *   keys_data.c data keys: active keys, batched creation, loading by id
 *   keys_cache.c  unwrapped keys: per backend and in shared memory, and
 *               their invalidation per key (keycache.c: the table)
 *   guc.c       settings
 *   consent.c   purposes and the "may this session use this category?" check
 *   consent_cache.c  privacy_internal.visible(subject): the consent check of
 *               protected tables, with its cache and the ring of changes
 *   protect.c   protected tables keep their protection (utility hook)
 *   types.c     encrypted_text/bytea (envelope.c: the ciphertext format)
 *   derived.c   what PostgreSQL derives from encrypted columns on its own
 *               (index order, index expressions, generated columns,
 *               extended statistics) asks the gate or is refused
 *   audit_*.c   the access log (audit.h maps its files): entry format,
 *               shared-memory queue, capture, hooks, writer worker, SQL
 *               functions (logchain.c: the MAC chain)
 *   worker.c    the purge launcher and its per-database workers
 *   redact.c    personal data kept out of the server log (redact_text.c:
 *               the SQL lexer)
 *   label.c     SECURITY LABEL FOR privacy (declarative classification)
 *   citus.c     scale-out on Citus: one catalog and one key set for the
 *               cluster
 */
#include "privacy.h"

#include <sodium.h>

#include "fmgr.h"
#include "miscadmin.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	/*
	 * The master key, shared memory and the hooks exist only when the
	 * library is loaded at server start.  Loaded any other way (CREATE
	 * EXTENSION, LOAD) it refuses, with the line to add.
	 */
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("privacy must be loaded via shared_preload_libraries"),
				 errdetail("The master key, the access-log queue and the background workers are set up when the server starts."),
				 errhint("Add this line to postgresql.conf and restart the server: shared_preload_libraries = 'privacy'  (append privacy to the list if the setting already names other libraries)")));

	if (sodium_init() < 0)
		ereport(FATAL,
				(errmsg("libsodium could not be initialized")));

	label_init();
	guc_define();
	keys_load_master_key();
	keys_cache_init();
	keys_data_init();
	catalog_init();
	memo_init();
	consent_init();
	consent_cache_init();
	types_init();
	consent_install_hooks();
	protect_install_hooks();
	derived_install_hooks();
	audit_init();
	audit_install_hooks();
	redact_install_hooks();
	citus_init();
	worker_init();				/* the launcher is not started by pg_upgrade */
}
