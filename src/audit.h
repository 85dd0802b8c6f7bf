/*
 * audit.h — the access log's files, as they see each other.
 *
 * The access log records who touched whose personal data, when and why.
 * Backends record an event per statement per protected table, and the
 * subjects whose encrypted values the statement opened; at the end of the
 * statement they serialize them into a queue in shared memory, one per
 * database; a writer background worker per database commits the queue to
 * the log, chaining a keyed MAC over each entry's canonical bytes
 * (logchain.c), and privacy.verify_access_log() recomputes the chain.
 *
 * One file per concern, each using only those listed before it:
 *   audit_format.c   canonical bytes of entries; the batch rows and the SQL
 *                    functions that unpack them
 *   audit_queue.c    shared memory: a byte ring per database, enqueueing
 *                    with back-pressure, starting the writer; the server
 *                    log as JSON lines (on a standby, as the last resort)
 *   audit_capture.c  events, the subjects a frame counts, a finished frame
 *                    sent to the queue
 *   audit_hooks.c    where the server calls in (executor, utility, fmgr and
 *                    log hooks, transaction callbacks, opened values) and
 *                    the frames they keep; audit_init, audit_record_report
 *   audit_head.c     where the log ends, kept apart from the batches: the
 *                    sealed head, where a writer goes on from, whether the
 *                    log still ends there
 *   audit_writer.c   the writer worker: drain, batch rows, chain, purposes
 *   audit_sql.c      flush, status, verify, trim
 *
 * The rest of privacy.so sees only what privacy.h declares; this header is
 * for these files alone.
 */
#ifndef AUDIT_H
#define AUDIT_H

#include "privacy.h"

#include "executor/execdesc.h"
#include "lib/stringinfo.h"
#include "nodes/bitmapset.h"
#include "nodes/pg_list.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "logchain.h"

#define WRITER_TYPE "privacy access log writer"
#define ENTRY_STATEMENT 'S'
#define ENTRY_SUBJECTS 'U'		/* queue record: subjects of the last 'S' */
#define ENTRY_SUBJECT 'u'		/* canonical bytes of one subject entry */

/* SQL for the MAC of a batch row's last entry: its entries' final bytes */
#define MAC_OF_LAST_ENTRY "pg_catalog.substr(entries, pg_catalog.length(entries) - " \
	CppAsString2(LOGCHAIN_MAC_BYTES) " + 1)"

/* audit_format.c — canonical bytes, batch rows */
typedef struct Reader
{
	const unsigned char *p;
	const unsigned char *end;
} Reader;

/* One statement event, as stored in a row of privacy.access_log. */
typedef struct StatementEntry
{
	TimestampTz at;
	char	   *session_role;
	char	   *acting_role;
	char	   *application;
	char	   *client_addr;
	int32		backend_pid;
	char	   *purpose;
	char	   *command;
	Oid			relid;
	char	   *relation;
	int			ncolumns;
	char	  **columns;
	char	  **categories;
	int64		rows;
	int64		query_id;
	int32		level;
	char	   *outcome;
	/* a denial's reason (consent_verdict_code) and refused category, or NULL */
	char	   *reason;
	char	   *denied_category;
} StatementEntry;

/*
 * The leading fields of a statement event (audit_canon_statement's order)
 * that the writer needs, read once, strings pointing into the bytes.
 */
typedef struct StatementHead
{
	TimestampTz at;
	const char *acting_role;	/* NULL, or acting_role_len bytes */
	int			acting_role_len;
	int32		pid;
	const char *purpose;		/* NULL, or purpose_len bytes */
	int			purpose_len;
} StatementHead;

extern void audit_put_u32(StringInfo buf, uint32 v);
extern void audit_put_i64(StringInfo buf, int64 v);
extern void audit_put_str(StringInfo buf, const char *s);
extern uint32 audit_get_u32(Reader *r);
extern int64 audit_get_i64(Reader *r);
extern char *audit_get_str(Reader *r);
extern void audit_canon_statement(StringInfo buf, const StatementEntry *e);
extern void audit_parse_statement(Reader *r, StatementEntry *e);
extern void audit_statement_head(const unsigned char *bytes, size_t len, StatementHead *h);
extern bool audit_statement_is_denial(const unsigned char *bytes, size_t len);
extern void audit_canon_subject(StringInfo buf, int64 event, const unsigned char *hash,
								const char *category, int64 opened);
extern int	audit_unpack_next(Reader *r, LogchainEntry *e);
extern void audit_put_offset(StringInfo offsets, uint32 off);
extern bool audit_batch_offsets(Datum entries, Datum offsets, int64 i, int64 j, uint32 *out, int64 *last);
extern bytea *audit_batch_bytes(Datum entries, uint32 start, uint32 end);
extern void audit_batch_corrupt(void) pg_attribute_noreturn();
extern int64 audit_subject_key(const unsigned char *hash);
extern void audit_sort_int64(int64 *first, size_t n);
extern Datum audit_bytea_datum(const unsigned char *b, size_t len);

/* audit_queue.c — shared memory, enqueueing, the server log */
typedef enum WriterState
{
	WRITER_NONE,
	WRITER_STARTING,
	WRITER_RUNNING
} WriterState;

typedef struct AuditQueue
{
	Oid			dboid;			/* InvalidOid: free */
	WriterState writer_state;
	TimestampTz writer_requested;
	int			writer_pid;
	Latch	   *writer_latch;
	uint64		head;			/* bytes ever enqueued */
	uint64		tail;			/* bytes ever committed to the log */
	uint64		chain_seq;		/* last seq a writer committed since start */
	unsigned char chain_mac[LOGCHAIN_MAC_BYTES];
	uint64		chain_broken;	/* its head's broken_at (0: none) */
	Oid			chain_extension;	/* ... into this installation's log */
	ConditionVariable space_cv; /* tail moved */
	char	   *data;			/* privacy_access_log_queue_size kB */
} AuditQueue;

typedef struct AuditShared
{
	LWLock	   *lock;
	int			nqueues;
	Size		qsize;
	AuditQueue	queues[FLEXIBLE_ARRAY_MEMBER];
} AuditShared;

extern AuditShared *audit_shared;

extern uint32 audit_wait_event(const char *name);

#define WAIT_QUEUE_FULL	audit_wait_event("PrivacyAccessLogQueueFull")
#define WAIT_DURABLE	audit_wait_event("PrivacyAccessLogDurable")
#define WAIT_WRITER		audit_wait_event("PrivacyAccessLogWriterMain")

extern void audit_queue_init(void);
extern int	audit_my_queue(void);
extern uint64 audit_enqueue(const char *data, Size len, bool in_abort, bool denial, int *qindex);
extern void audit_wait_durable(int idx, uint64 end);
extern void audit_queue_copy(AuditQueue *q, uint64 start, uint64 end, unsigned char *buf);
extern void audit_start_writer(int index);
extern void audit_emit_json(StringInfo rec);
extern void audit_emit_json_framed(const char *data, Size len);

/* audit_capture.c — events, subjects, frames sent to the queue */
typedef struct SubjectCount
{
	uint64		ident;			/* the key: category << 32 | key_id */
	uint32		key_id;
	uint16		category;
	char		status;			/* simplehash's */
	unsigned char hash[PRIVACY_SUBJECT_HASH_BYTES];
	int64		count;
} SubjectCount;

/* A category's name as a frame's subject entries carry it (copied: a frame may be sent in an abort). */
typedef struct FrameCategory
{
	uint16		id;
	char		name[NAMEDATALEN];
} FrameCategory;

struct subject_map_hash;

/*
 * A frame is one executor run (or one COPY) in progress.  It holds an
 * event per protected table the statement names, and the subjects whose
 * values were opened while it was the innermost frame.
 */
typedef struct AuditFrame
{
	struct AuditFrame *outer;	/* the frame started before this one */
	QueryDesc  *qd;				/* the executor run, or NULL */
	bool		copy;			/* a COPY statement (utility) */
	bool		copy_claimed;	/* its executor run, if any, has started */
	int			level;
	SubTransactionId subid;
	List	   *events;			/* StatementEntry *, rows/outcome unset */
	struct subject_map_hash *subjects;	/* SubjectCount, created past the inline ones */
	SubjectCount *last_subject; /* the entry the last open counted */
	int			ncategories;	/* the names of the categories counted */
	FrameCategory *categories;
	int64		utility_rows;
	int64		rows_run;		/* es_processed when its run last returned */
	bool		flushed;		/* its events went out: never again */
	CmdType		operation;
	const char *utility_tag;	/* frames of utility statements */
	int64		query_id;
	int			ninline;		/* the first subjects, without a hash table */
	SubjectCount *inline_subjects;
	/* refused (consent_denied_hook): it ends as a denial, with this reason */
	const char *deny_reason;
	char	   *denied_category;
	bool		refusal_sent;	/* its events went out when the refusal raised */
} AuditFrame;

extern bool audit_frame_has_subjects(AuditFrame *f);
extern SubjectCount *audit_frame_subject(AuditFrame *f, uint32 key_id, uint16 category,
										 MemoryContext cxt, bool *found);
extern HTAB *audit_small_map(HTAB **map, const char *name, Size keysize, Size entrysize,
							 long max);
extern void audit_relcache_callback(Datum arg, Oid relid);
extern char *audit_role_name(Oid roleid);
extern StatementEntry *audit_new_event(const char *command, Oid relid, const CatalogRelation *ri,
									   Bitmapset *cols, bool all_columns);
extern void audit_flush_frame(AuditFrame *f, const char *outcome, int64 rows, bool in_abort);
extern void audit_forget_subjects(AuditFrame *f);
extern void audit_frame_category(AuditFrame *f, uint16 category, const char *name, MemoryContext cxt);

/* audit_hooks.c — the backend side */
extern unsigned char audit_chain_key_scratch[LOGCHAIN_KEY_BYTES];
extern void audit_become_writer(void);

/* audit_head.c — where the log ends, kept apart from the batches */
typedef struct AuditChainEnd
{
	bool		known;			/* false: this source knows nothing */
	int64		seq;			/* the last entry (0: none written) */
	unsigned char mac[LOGCHAIN_MAC_BYTES];	/* its MAC */
	int64		broken_at;		/* 0, or the first entry after a lost head */
} AuditChainEnd;

extern void audit_shm_head(AuditQueue *q, Oid extension, AuditChainEnd *end);
extern void audit_resume_chain(AuditQueue *q, Oid extension, const unsigned char *key,
							   AuditChainEnd *chain);
extern void audit_store_head(const unsigned char *key, const AuditChainEnd *end);
extern const char *audit_check_end(const unsigned char *key, int64 log_start, int64 last,
								   const unsigned char *last_mac, const AuditChainEnd *shm,
								   int64 *bad_seq, char **detail);

#endif
