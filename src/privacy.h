/*
 * privacy.h — what the parts of privacy.so expose to each other.
 *
 * One section per part of the design (see doc/internals.md): each .c file in
 * src/ implements one part, and _PG_init in privacy.c wires them together.
 */
#ifndef PRIVACY_H
#define PRIVACY_H

#include "compat.h"
#include "access/attnum.h"
#include "nodes/nodes.h"
#include "utils/inval.h"

#define PRIVACY_SCHEMA "privacy"
/* Helpers the API is built of: not documented, not for users to call. */
#define PRIVACY_INTERNAL_SCHEMA "privacy_internal"

/* guc.c — settings, all privacy.* */
extern char *privacy_master_key_command;
extern char *privacy_portal_subject;
extern char *privacy_previous_master_key_command;
extern char *privacy_purpose;
typedef enum OnDenied
{
	ON_DENIED_ERROR,
	ON_DENIED_MASK
} OnDenied;
extern int	privacy_on_denied;
extern int	privacy_purge_batch_size;
extern int	privacy_purge_interval;
#define PRIVACY_MAX_PURGE_WORKERS 16
extern int	privacy_purge_workers;
extern int	privacy_reseal_delay;
extern char *privacy_worker_database;
extern void guc_define(void);

/* catalog.c — the extension's own tables, seen from C */
typedef struct CatalogUserState
{
	Oid			save_userid;
	int			save_sec_context;
	bool		pushed_snapshot;
	int			guc_nest_level; /* search_path pinned while switched */
} CatalogUserState;

extern uint64 catalog_generation;
extern void catalog_init(void);
/* one relcache callback slot for every part (catalog.c dispatches) */
extern void catalog_on_relcache(RelcacheCallbackFunction fn);

/* memo.c — what purge and erasure derive from the catalogs, per session */
extern void memo_init(void);
extern Oid	catalog_namespace(void);
extern Oid	catalog_relid(const char *relname);
extern void catalog_accept_invalidations(void);
/* A protected table and its classified columns (see catalog.c). */
typedef struct CatalogRelation
{
	Oid			relid;
	int			ncolumns;
	int			maxcolumns;		/* allocated */
	AttrNumber *attnums;
	char	  **columns;
	char	  **categories;
} CatalogRelation;

/*
 * Load (once per catalog generation) the protected tables: false when the
 * extension is not in this database, or while the map is being loaded (its
 * own query passing the executor hooks).  Then catalog_protected_relation
 * is the table's entry, or NULL if it is not protected.
 */
extern bool catalog_protected_ready(void);
extern bool catalog_any_protected(void);
extern bool catalog_is_protected_now(Oid relid);
extern bool catalog_statement_without_snapshot(Node *utility);
extern const CatalogRelation *catalog_protected_relation(Oid relid);
extern void catalog_become_owner(CatalogUserState *state);
struct _SPI_plan;
extern int	catalog_execute_plan_latest(struct _SPI_plan *plan, Datum *values, const char *nulls,
										bool read_only, long tcount);
extern int	catalog_maintenance_depth;
extern struct _SPI_plan *catalog_kept_plan(Oid relid, const char *sql, int nargs, Oid *argtypes);
extern int64 catalog_run_as_owner(Oid relid, const char *sql, int nargs, Oid *argtypes,
								  Datum *values, const char *nulls);
extern void catalog_restore_user(CatalogUserState *state);
extern bool catalog_written_in_transaction(void);
extern uint16 catalog_category_id(const char *name);
extern const char *catalog_category_name(uint16 id);

/* keys*.c — the master key, data keys and their caches (keys.h maps the files) */
#define PRIVACY_MASTER_KEY_BYTES 32
extern void keys_load_master_key(void);
extern bool keys_master_key_available(void);
extern void keys_require_master_key(void);
extern const char *keys_master_fingerprint(void);
#define PRIVACY_DATA_KEY_BYTES 32
#define PRIVACY_SUBJECT_HASH_BYTES 32
typedef enum DataKeyState
{
	DATA_KEY_ACTIVE,
	DATA_KEY_RETIRED,
	DATA_KEY_DESTROYED
} DataKeyState;
extern const unsigned char *keys_data_key(uint32 key_id, DataKeyState *state);
extern uint32 keys_category_key(const char *category);
extern bool keys_is_category_key(uint32 key_id);
extern const unsigned char *keys_key_subject(uint32 key_id);
extern void keys_access_log_key(unsigned char *out);
extern uint32 keys_subject_key(const char *subject, size_t len, bool create);
extern uint32 keys_subject_key_hashed(const unsigned char *hash, bool create);
extern uint32 keys_subject_key_by_hash(const unsigned char *subject_hash);
extern uint32 keys_internal_key_id(const char *name);
extern uint32 (*keys_create_hook) (char scope, const char *name, const unsigned char *subject_hash);
extern void keys_subject_hash(const char *subject, size_t len, unsigned char *out);
#define PRIVACY_TRANSIENT_KEY_ID 0xFFFFFFFFu
extern const unsigned char *keys_transient_key(void);
extern void keys_search_key(unsigned char *out, size_t outlen);
extern void keys_derive(const char *context, uint64 subkey_id,
						unsigned char *out, size_t outlen);
extern void keys_cache_init(void);
extern void keys_data_init(void);

/* consent.c — purposes: may this session use this category now? */
typedef enum PurposeVerdict
{
	PURPOSE_ALLOWED = 0,
	PURPOSE_NOT_DECLARED,
	PURPOSE_UNKNOWN,
	PURPOSE_NOT_HELD,
	PURPOSE_UNKNOWN_CATEGORY,
	PURPOSE_CATEGORY_NOT_ALLOWED
} PurposeVerdict;

extern void consent_init(void);
extern void consent_install_hooks(void);
extern PurposeVerdict consent_purpose_verdict(const char *category);
extern void consent_require_purpose(const char *category);
extern void consent_unlock_ledger(bool unlocked);
extern void consent_refuse(PurposeVerdict verdict, const char *category);
extern void consent_note_refusal(PurposeVerdict verdict, const char *category, bool raising);
extern const char *consent_verdict_code(PurposeVerdict verdict);

/*
 * Told of every refusal to process personal data (a statement stopped by
 * the purpose check, a value the decryption gate refuses), before the
 * error is raised (raising) or the value masked; audit_init sets it.
 */
extern void (*consent_denied_hook) (PurposeVerdict verdict, const char *category, bool raising);

/* consent_cache.c — privacy_internal.visible(subject), the consent check */
extern int	privacy_consent_cache_size;
extern int	privacy_consent_changes;
extern void consent_cache_init(void);
extern uint64 consent_statement_serial;	/* counts executor starts (consent.c) */
extern bool consent_parse_int8(const char *s, int len, int64 *out);

/* audit_*.c — the access log (audit.h: what its files share among them) */
extern bool privacy_access_log;
extern bool privacy_access_log_strict;
extern int	privacy_access_log_queue_size;
extern int	privacy_access_log_flush_interval;
extern int	privacy_access_log_retention;
extern int	privacy_access_log_databases;
/* the format of its server-log lines (standby, last resort): keyed hashes, no values */
#define AUDIT_LOG_LINE_FORMAT "privacy access: %s"
extern void audit_init(void);
extern void audit_install_hooks(void);
extern int64 audit_trim_log(void);
extern void audit_record_report(Oid relid, int64 rows, const unsigned char *subject_hash,
								int ncategories, const char *const *categories,
								const int64 *opened);

/* protect.c — protection of protected tables cannot be switched off quietly */
extern void protect_install_hooks(void);

/* derived.c — index order, index expressions, generated columns, statistics */
extern void derived_install_hooks(void);

/* worker.c — the purge launcher and its workers */
extern void worker_init(void);

/* types.c — the encrypted types */
extern void types_init(void);
extern bool types_ciphertext_io(void);
/* the envelope kind (envelope.h) of an encrypted type, 0 for other types */
extern int	types_encrypted_kind(Oid type);
extern const char *types_encrypted_type_name(int i);
extern bool types_holds_encrypted(Oid type);
extern bool types_is_encrypted(Oid type);
extern void (*types_value_opened_hook) (uint32 key_id, uint16 category_id);

/* label.c — SECURITY LABEL FOR privacy: declarative classification */
extern void label_init(void);

/* redact.c — personal data kept out of the server log */
extern void redact_install_hooks(void);

/* citus.c — scale-out on Citus: one catalog and one key set for the cluster */
extern void citus_init(void);
extern bool citus_applying_change(void);
extern bool citus_loaded(void);
extern bool citus_serving_report(void);
extern bool citus_forwarded_insert(void);
extern void citus_publish_forwarding(void);
extern bool privacy_citus_batch_keys;

/* protect.c */
extern bool protect_is_seal_trigger(Oid relid, const char *name);

/* report.c — the subject report: a subject's rows under the built-in purpose */
#define PRIVACY_SUBJECT_ACCESS_PURPOSE "subject_access"
extern bool report_in_progress;

#endif
