/*
 * audit_capture.c — what a statement's access becomes: events and subjects.
 *
 * An event is one statement's access to one protected table: who (session
 * and acting role, application, client address, backend), why (the
 * declared purpose), what (command, table, personal columns), then rows,
 * query id, nesting level and outcome.  Events never contain statement
 * text or parameter values.  A frame (audit_hooks.c keeps them) holds a
 * statement's events and counts the subjects whose values it opened;
 * flushing it sends the events in their canonical bytes (audit_format.c),
 * the subjects right after the first, to the queue (audit_queue.c), or to
 * the server log on a hot standby.
 */
#include "audit.h"

#include "access/sysattr.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_authid.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#define SUBJECTS_PER_RECORD 200

/* ------------------------------------------------------------------------
 * The subjects a frame counts: whose values it opened, per category.
 * ------------------------------------------------------------------------
 */
#define INLINE_SUBJECTS 8

/*
 * Past the inline ones, an open-addressing table of the entries themselves
 * (no chains, no per-entry allocation), walked in one pass when the frame
 * is sent: a scan that opens a million subjects' values counts them in a
 * million entries of 56 bytes.
 */
static inline uint32
subject_slot_hash(uint64 ident)
{
	return murmurhash32((uint32) ident) ^ (uint32) (ident >> 32);
}

#define SUBJECT_IDENT(key_id, category) (((uint64) (category) << 32) | (uint64) (key_id))

#define SH_PREFIX subject_map
#define SH_ELEMENT_TYPE SubjectCount
#define SH_KEY_TYPE uint64
#define SH_KEY ident
#define SH_HASH_KEY(tb, key) subject_slot_hash(key)
#define SH_EQUAL(tb, a, b) ((a) == (b))
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

bool
audit_frame_has_subjects(AuditFrame *f)
{
	return f->ninline > 0 || (f->subjects != NULL && f->subjects->members > 0);
}

/*
 * The count of one subject key and category in a frame: most statements
 * open a few subjects, kept in a small array; a table takes over beyond
 * that.  A row's values usually belong to one subject: the entry the last
 * open counted is tried first.  The pointer is valid until the next call.
 */
SubjectCount *
audit_frame_subject(AuditFrame *f, uint32 key_id, uint16 category, MemoryContext cxt, bool *found)
{
	uint64		ident = SUBJECT_IDENT(key_id, category);
	SubjectCount *sc;
	int			i;

	if (f->last_subject != NULL && f->last_subject->ident == ident)
	{
		*found = true;
		return f->last_subject;
	}
	for (i = 0; i < f->ninline; i++)
		if (f->inline_subjects[i].ident == ident)
		{
			*found = true;
			return f->last_subject = &f->inline_subjects[i];
		}
	if (f->subjects == NULL && f->ninline < INLINE_SUBJECTS)
	{
		if (f->inline_subjects == NULL)
			f->inline_subjects = MemoryContextAlloc(cxt, sizeof(SubjectCount) * INLINE_SUBJECTS);
		sc = &f->inline_subjects[f->ninline++];
		memset(sc, 0, sizeof(*sc));
		sc->ident = ident;
		sc->key_id = key_id;
		sc->category = category;
		*found = false;
		return f->last_subject = sc;
	}
	if (f->subjects == NULL)
		f->subjects = subject_map_create(cxt, 256, NULL);
	sc = subject_map_insert(f->subjects, ident, found);
	if (!*found)
	{
		sc->key_id = key_id;
		sc->category = category;
		sc->count = 0;
	}
	return f->last_subject = sc;
}

/* Keep the name of a category the frame counts subjects of (copied once). */
void
audit_frame_category(AuditFrame *f, uint16 category, const char *name, MemoryContext cxt)
{
	int			i;

	for (i = 0; i < f->ncategories; i++)
		if (f->categories[i].id == category)
			return;
	if (f->categories == NULL)
		f->categories = MemoryContextAlloc(cxt, sizeof(FrameCategory) * 4);
	else if ((f->ncategories & (f->ncategories - 1)) == 0 && f->ncategories >= 4)
		f->categories = repalloc(f->categories, sizeof(FrameCategory) * f->ncategories * 2);
	f->categories[f->ncategories].id = category;
	if (name != NULL)
		strlcpy(f->categories[f->ncategories].name, name, NAMEDATALEN);
	else
		snprintf(f->categories[f->ncategories].name, NAMEDATALEN, "category %u", category);
	f->ncategories++;
}

static const char *
frame_category_name(AuditFrame *f, uint16 category)
{
	int			i;

	for (i = 0; i < f->ncategories; i++)
		if (f->categories[i].id == category)
			return f->categories[i].name;
	return "";
}

/* ------------------------------------------------------------------------
 * Events, and what every event repeats (names, roles, client address),
 * looked up once.
 * ------------------------------------------------------------------------
 */

/*
 * Relations' names as events show them (schema.table, quoted), until a
 * relation cache invalidation says names may have changed.
 */
typedef struct DisplayName
{
	Oid			relid;
	uint64		generation;		/* of display_names_generation */
	char		name[4 * NAMEDATALEN + 8];
} DisplayName;

static HTAB *display_names = NULL;

/*
 * A map of this backend's, made on first use and started afresh once it
 * holds more than max entries (what it remembers can be found again).
 */
HTAB *
audit_small_map(HTAB **map, const char *name, Size keysize, Size entrysize, long max)
{
	if (*map != NULL && hash_get_num_entries(*map) > max)
	{
		hash_destroy(*map);
		*map = NULL;
	}
	if (*map == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = keysize;
		ctl.entrysize = entrysize;
		ctl.hcxt = TopMemoryContext;
		*map = hash_create(name, 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	return *map;
}

static uint64 display_names_generation = 1;

void
audit_relcache_callback(Datum arg, Oid relid)
{
	display_names_generation++;
}

static char *
display_name(Oid relid)
{
	static DisplayName *last = NULL;	/* most statements name one table */
	DisplayName *dn;
	bool		found;
	char	   *nsp;
	char	   *rel;

	if (last != NULL && last->relid == relid && last->generation == display_names_generation)
		return pstrdup(last->name);
	last = NULL;				/* the map may be started afresh below */
	dn = hash_search(audit_small_map(&display_names, "privacy relation names", sizeof(Oid),
									 sizeof(DisplayName), 10000),
					 &relid, HASH_ENTER, &found);
	if (found && dn->generation == display_names_generation)
	{
		last = dn;
		return pstrdup(dn->name);
	}
	nsp = get_namespace_name(get_rel_namespace(relid));
	rel = get_rel_name(relid);
	if (nsp == NULL || rel == NULL)
	{
		hash_search(display_names, &relid, HASH_REMOVE, NULL);
		return psprintf("relation %u", relid);
	}
	strlcpy(dn->name, quote_qualified_identifier(nsp, rel), sizeof(dn->name));
	dn->generation = display_names_generation;
	last = dn;
	return pstrdup(dn->name);
}

/* Role names, application and client address: what every event repeats. */
char *
audit_role_name(Oid roleid)
{
	static Oid	cached_oid = InvalidOid;
	static uint64 cached_generation = 0;	/* a rename bumps it */
	static char cached[NAMEDATALEN];
	HeapTuple	tup;

	if (roleid == cached_oid && OidIsValid(roleid) && cached_generation == catalog_generation)
		return pstrdup(cached);
	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(roleid));
	if (!HeapTupleIsValid(tup))
		return psprintf("role %u", roleid);
	strlcpy(cached, NameStr(((Form_pg_authid) GETSTRUCT(tup))->rolname), NAMEDATALEN);
	ReleaseSysCache(tup);
	cached_oid = roleid;
	cached_generation = catalog_generation;
	return pstrdup(cached);
}

/* The client's address as inet prints it; NULL over a Unix socket. */
static char *
client_address(void)
{
	static bool done = false;
	static char addr[64];

	if (!done)
	{
		LOCAL_FCINFO(fcinfo, 0);
		Datum		d;

		addr[0] = '\0';
		InitFunctionCallInfoData(*fcinfo, NULL, 0, InvalidOid, NULL, NULL);
		d = inet_client_addr(fcinfo);
		if (!fcinfo->isnull)
			strlcpy(addr, DatumGetCString(DirectFunctionCall1(inet_out, d)), sizeof(addr));
		done = true;
	}
	return addr[0] ? pstrdup(addr) : NULL;
}

/* An event for one relation (or for none: subjects opened elsewhere). */
StatementEntry *
audit_new_event(const char *command, Oid relid, const CatalogRelation *ri, Bitmapset *cols,
				bool all_columns)
{
	StatementEntry *e = palloc0(sizeof(StatementEntry));
	int			i;

	e->at = GetCurrentStatementStartTimestamp();
	e->session_role = audit_role_name(GetSessionUserId());
	e->acting_role = audit_role_name(GetUserId());
	e->application = (application_name && application_name[0]) ? pstrdup(application_name) : NULL;
	e->client_addr = client_address();
	e->backend_pid = MyProcPid;
	e->purpose = (privacy_purpose && privacy_purpose[0]) ? pstrdup(privacy_purpose) : NULL;
	e->command = pstrdup(command);
	e->relid = relid;
	if (OidIsValid(relid))
		e->relation = display_name(relid);
	e->columns = palloc(sizeof(char *) * ((ri ? ri->ncolumns : 0) + 1));
	e->categories = palloc(sizeof(char *) * ((ri ? ri->ncolumns : 0) + 1));
	for (i = 0; ri != NULL && i < ri->ncolumns; i++)
	{
		bool		whole_row = all_columns ||
			bms_is_member(0 - FirstLowInvalidHeapAttributeNumber, cols);

		if (whole_row || bms_is_member(ri->attnums[i] - FirstLowInvalidHeapAttributeNumber, cols))
		{
			e->columns[e->ncolumns] = pstrdup(ri->columns[i]);
			e->categories[e->ncolumns] = pstrdup(ri->categories[i]);
			e->ncolumns++;
		}
	}
	return e;
}

/* ------------------------------------------------------------------------
 * Flushing a frame: its events, then its subjects, into the queue.
 * ------------------------------------------------------------------------
 */
static void
set_count(StringInfo rec, int at, uint32 n)
{
	rec->data[at] = n >> 24;
	rec->data[at + 1] = n >> 16;
	rec->data[at + 2] = n >> 8;
	rec->data[at + 3] = n;
}

/*
 * A statement's records on their way: framed in one buffer, so that they
 * take the queue's lock once (up to SENDER_CHUNK bytes at a time).
 */
#define SENDER_CHUNK (16 * 1024)

typedef struct Sender
{
	StringInfoData out;			/* framed records not yet in the queue */
	bool		standby;		/* they go to the server log instead */
	bool		in_abort;
	bool		denial;			/* a refusal's: half the queue at most */
	uint64		end;			/* the queue position after the last sent */
	int			qidx;
} Sender;

static void
sender_flush(Sender *s)
{
	if (s->out.len > 0)
		s->end = audit_enqueue(s->out.data, s->out.len, s->in_abort, s->denial, &s->qidx);
	resetStringInfo(&s->out);
}

/* Send one record: to the queue, or on a standby to the server log. */
static void
send_record(Sender *s, StringInfo rec)
{
	uint32		len = rec->len + 4;

	if (s->standby)
	{
		audit_emit_json(rec);
		return;
	}
	if (s->out.len > 0 && s->out.len + len > SENDER_CHUNK)
		sender_flush(s);
	audit_put_u32(&s->out, len);
	appendBinaryStringInfo(&s->out, rec->data, rec->len);
	if (s->out.len > SENDER_CHUNK)
		sender_flush(s);		/* a large record, alone */
}

/* The subjects a frame opened, in records of SUBJECTS_PER_RECORD. */
static void
send_subjects(AuditFrame *f, StringInfo rec, Sender *sender)
{
	subject_map_iterator it = {0};
	SubjectCount *sc;
	int			n = 0;
	int			count_at = 0;
	int			next_inline = 0;

	if (!audit_frame_has_subjects(f))
		return;
	if (f->subjects != NULL)
		subject_map_start_iterate(f->subjects, &it);
	for (;;)
	{
		if (next_inline < f->ninline)
			sc = &f->inline_subjects[next_inline++];
		else if (f->subjects == NULL || (sc = subject_map_iterate(f->subjects, &it)) == NULL)
			break;
		if (n == 0)
		{
			resetStringInfo(rec);
			appendStringInfoChar(rec, ENTRY_SUBJECTS);
			audit_put_u32(rec, (uint32) MyProcPid);
			audit_put_i64(rec, MyStartTimestamp);	/* pids are reused */
			count_at = rec->len;
			audit_put_u32(rec, 0);
		}
		appendBinaryStringInfo(rec, (char *) sc->hash, PRIVACY_SUBJECT_HASH_BYTES);
		audit_put_str(rec, frame_category_name(f, sc->category));
		audit_put_i64(rec, sc->count);
		if (++n == SUBJECTS_PER_RECORD)
		{
			set_count(rec, count_at, n);
			send_record(sender, rec);
			n = 0;
		}
	}
	if (n > 0)
	{
		set_count(rec, count_at, n);
		send_record(sender, rec);
	}
}

/*
 * Flushing a frame: its events into the queue, the subjects right after
 * the first (the writer links them to the statement event before them).
 * A frame that was refused ends as a denial, with its reason, however its
 * statement ended.
 */
void
audit_flush_frame(AuditFrame *f, const char *outcome, int64 rows, bool in_abort)
{
	ListCell   *lc;
	StringInfoData rec;
	Sender		sender;
	bool		first = true;

	if (f->deny_reason != NULL)
		outcome = "denied";
	initStringInfo(&rec);
	initStringInfo(&sender.out);
	sender.standby = RecoveryInProgress();
	sender.in_abort = in_abort;
	sender.denial = f->deny_reason != NULL;
	sender.end = 0;
	sender.qidx = -1;
	foreach(lc, f->events)
	{
		StatementEntry *e = lfirst(lc);

		e->rows = rows;
		e->query_id = f->query_id;
		e->level = f->level;
		e->outcome = (char *) outcome;
		e->reason = (char *) f->deny_reason;
		e->denied_category = f->denied_category;
		resetStringInfo(&rec);
		audit_canon_statement(&rec, e);
		send_record(&sender, &rec);
		if (first)
			send_subjects(f, &rec, &sender);
		first = false;
	}
	if (f->events == NIL)
		send_subjects(f, &rec, &sender);
	sender_flush(&sender);
	pfree(rec.data);
	pfree(sender.out.data);

	if (privacy_access_log_strict && !in_abort && sender.end > 0 && sender.qidx >= 0)
		audit_wait_durable(sender.qidx, sender.end);
}

/* The subjects a frame counted were sent: count afresh. */
void
audit_forget_subjects(AuditFrame *f)
{
	f->ninline = 0;
	f->last_subject = NULL;
	if (f->subjects != NULL)
		subject_map_destroy(f->subjects);
	f->subjects = NULL;
}
