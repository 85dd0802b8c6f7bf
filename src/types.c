/*
 * types.c — privacy.encrypted_text and privacy.encrypted_bytea.
 *
 * A stored value is a varlena holding
 *
 *     format (1 byte) | search tag (16 bytes, if format = searchable) | envelope
 *
 * where the envelope (envelope.c) is the authenticated ciphertext and the
 * search tag is a keyed BLAKE2b hash of the plaintext (a blind index) that
 * makes equality search and joins possible on columns that opted in.  A
 * changed tag is detected when the value is opened, since the tag of the
 * decrypted plaintext must match.
 *
 * Values are sealed where they enter, so plaintext never reaches a temp
 * file, WAL or a table:
 *   - COPY passes the column's type modifier to the input function, which
 *     seals with the key of the column's category at once;
 *   - literals and parameters are parsed without the modifier, so they are
 *     sealed with the backend's transient key, and the type-modifier coercion
 *     applied on assignment reseals them under the column's key.
 * The type modifier is the column's category (and the searchable flag):
 * privacy.encrypted_text(contact) or (contact, searchable).
 *
 * Reading goes through the decryption gate: plaintext only when the session
 * declared a purpose that its role holds and that is allowed the value's
 * category.  A superuser or privacy_admin with no purpose declared reads and
 * writes the envelope itself (the "pv1:" text form), which is what pg_dump
 * and pg_restore see; binary send and receive follow the same rule (the
 * stored bytes for those roles, plaintext through the gate for everyone
 * else), so that binary COPY by those roles and logical replication move
 * ciphertext, and an application's binary COPY out and back in round-trips.
 */
#include "privacy.h"

#include <sodium.h>

#include "access/relation.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "common/hashfn.h"
#include "envelope.h"
#include "storedform.h"
#include "typmod.h"
#include "fmgr.h"
#include "funcapi.h"
#include "libpq/pqformat.h"
#include "miscadmin.h"
#include "parser/parse_coerce.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/rls.h"

#define SEARCH_TAG_BYTES STOREDFORM_TAG_BYTES

#define TEXT_MASK "********"
#define TEXT_ERASED "[erased]"

/* A parsed stored value (storedform.h): format, tag, envelope and its header. */
typedef StoredForm EncValue;

/*
 * Told of every value opened (its key and category): the access log sets
 * it at load time, so that this file knows nothing of the log.
 */
void		(*types_value_opened_hook) (uint32 key_id, uint16 category_id) = NULL;

/*
 * Nonces: a random 128-bit prefix drawn once per backend process, then a
 * 64-bit counter.  Unique per key with overwhelming probability (two
 * backends would need the same 128-bit prefix), and it saves the system call
 * that a fresh random nonce costs on every seal (over a third of the cost
 * of sealing a short value).  The prefix is drawn again after a fork.
 */
static void
backend_nonce(unsigned char *nonce, size_t len)
{
	static int	owner_pid = 0;
	static unsigned char prefix[16];
	static uint64 counter = 0;
	uint64		c;
	int			i;

	Assert(len == 24);
	if (owner_pid != MyProcPid)
	{
		randombytes_buf(prefix, sizeof(prefix));
		counter = 0;
		owner_pid = MyProcPid;
	}
	if (++counter == 0)
	{
		/* 2^64 seals in one backend: start over with a new prefix */
		randombytes_buf(prefix, sizeof(prefix));
		counter = 1;
	}
	memcpy(nonce, prefix, sizeof(prefix));
	c = counter;
	for (i = 23; i >= 16; i--)
	{
		nonce[i] = (unsigned char) (c & 0xff);
		c >>= 8;
	}
}

void
types_init(void)
{
	envelope_set_nonce_source(backend_nonce);
}

/* The envelope code's reasons are clauses; error details are sentences. */
static char *
sentence(const char *why)
{
	char	   *s = psprintf("%s.", why ? why : "unknown reason");

	s[0] = pg_toupper((unsigned char) s[0]);
	return s;
}

/* A stored value; the parsing itself is storedform.c's. */
static void
enc_parse(bytea *v, EncValue *ev)
{
	const char *why = NULL;

	if (storedform_parse((const unsigned char *) VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v),
						 ev, &why) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("encrypted value is corrupted"),
				 errdetail("%s", sentence(why))));
}

static void
search_tag_bytes(const unsigned char *pt, size_t len, unsigned char *out)
{
	unsigned char key[crypto_generichash_KEYBYTES];

	keys_search_key(key, sizeof(key));
	crypto_generichash(out, SEARCH_TAG_BYTES, pt, len, key, sizeof(key));
	sodium_memzero(key, sizeof(key));
}

/*
 * The search tag of a plaintext of this kind: a keyed hash of its bytes,
 * which for every kind but numeric are one per value (the binary send form
 * of date, timestamptz, integer and bigint is canonical).  Numerics equal
 * for PostgreSQL may differ in their display scale (1.5 = 1.50), so their
 * tag hashes the value with its trailing zeros trimmed.
 */
static void
search_tag(EnvelopeKind kind, const unsigned char *pt, size_t len, unsigned char *out)
{
	if (kind == ENVELOPE_NUMERIC)
	{
		StringInfoData buf;
		Datum		n;
		bytea	   *canon;

		buf.data = (char *) pt;
		buf.len = (int) len;
		buf.maxlen = (int) len + 1;
		buf.cursor = 0;
		n = DirectFunctionCall3(numeric_recv, PointerGetDatum(&buf),
								ObjectIdGetDatum(NUMERICOID), Int32GetDatum(-1));
		n = DirectFunctionCall1(numeric_trim_scale, n);
		canon = DatumGetByteaPP(DirectFunctionCall1(numeric_send, n));
		search_tag_bytes((const unsigned char *) VARDATA_ANY(canon), VARSIZE_ANY_EXHDR(canon), out);
		sodium_memzero(VARDATA_ANY(canon), VARSIZE_ANY_EXHDR(canon));
		return;
	}
	search_tag_bytes(pt, len, out);
}

/*
 * Superusers and members of privacy_admin are the dump/restore roles.
 * Privilege is judged on the session's current role outside any SECURITY
 * DEFINER function: a function owned by a superuser must not turn its
 * caller's input into accepted ciphertext.  Asked once per value, so the
 * answer is kept per role until role membership (or anything else in the
 * catalog generation) changes.
 */
static bool
privileged_role(void)
{
	static Oid	cached_role = InvalidOid;
	static uint64 cached_generation = 0;
	static bool cached_answer = false;
	Oid			outer = GetOuterUserId();
	Oid			admin;

	catalog_accept_invalidations();
	if (outer == cached_role && cached_generation == catalog_generation)
		return cached_answer;
	admin = get_role_oid("privacy_admin", true);
	cached_answer = superuser_arg(outer) ||
		(OidIsValid(admin) && has_privs_of_role(outer, admin));
	cached_role = outer;
	cached_generation = catalog_generation;
	return cached_answer;
}

/*
 * The dump/restore roles with no purpose declared handle envelopes rather
 * than plaintext: that is how pg_dump and pg_restore work.
 */
static bool
ciphertext_io(void)
{
	if (privacy_purpose != NULL && privacy_purpose[0] != '\0')
		return false;
	return privileged_role();
}

/* For the other parts: does this session read and write envelopes? */
bool
types_ciphertext_io(void)
{
	return ciphertext_io();
}

static const char *
category_name_or_error(uint16 id)
{
	const char *name = catalog_category_name(id);

	if (name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("encrypted value names category id %u, which does not exist", id),
				 errdetail("The value was altered, or its category was not restored with it."),
				 errhint("Restore privacy.categories from the same dump as the data.")));
	return name;
}

/* Seal under a given key; the search tag is kept if known, else computed. */
static bytea *
enc_seal_with(EnvelopeKind kind, uint16 category_id, bool searchable, uint32 key_id,
			  const unsigned char *key, const unsigned char *pt, size_t len,
			  const unsigned char *known_tag)
{
	size_t		envlen = envelope_sealed_size(len);
	size_t		total;
	bytea	   *out;
	unsigned char *p;

	if (envlen == 0 || envlen > MaxAllocSize - VARHDRSZ - 1 - SEARCH_TAG_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("value is too large to encrypt")));

	total = VARHDRSZ + storedform_size(envlen, searchable);
	out = palloc(total);
	SET_VARSIZE(out, total);
	p = (unsigned char *) VARDATA(out);
	if (searchable)
	{
		unsigned char tag[SEARCH_TAG_BYTES];

		if (known_tag)
			memcpy(tag, known_tag, SEARCH_TAG_BYTES);
		else
			search_tag(kind, pt, len, tag);
		storedform_write(p, NULL, envlen, tag);
	}
	else
		storedform_write(p, NULL, envlen, NULL);
	if (envelope_seal(p + 1, key_id, category_id, kind, key, pt, len) != 0)
		elog(ERROR, "encryption failed");
	return out;
}

/* The name of the category a column's type modifier names; it must exist. */
static const char *
column_category(int32 typmod)
{
	const char *category = catalog_category_name(TYPMOD_CATEGORY(typmod));

	if (category == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("the category of this column (id %u) does not exist", TYPMOD_CATEGORY(typmod)),
				 errdetail("The column's type names a category that was never created in this database."),
				 errhint("Create it with privacy.create_category(), or change the column's type modifier.")));
	return category;
}

/*
 * Seal plaintext for a column with this type modifier (-1: not known, seal
 * with the transient key; the assignment coercion reseals it).
 */
static bytea *
enc_seal(EnvelopeKind kind, int32 typmod, const unsigned char *pt, size_t len,
		 const unsigned char *known_tag)
{
	uint32		key_id;
	const unsigned char *key;
	DataKeyState state;
	const char *category;

	keys_require_master_key();
	if (typmod < 0)
		/* searchable: it may be compared in this very statement */
		return enc_seal_with(kind, catalog_category_id("unclassified"), true,
							 PRIVACY_TRANSIENT_KEY_ID, keys_transient_key(),
							 pt, len, known_tag);

	category = column_category(typmod);
	key_id = keys_category_key(category);
	key = keys_data_key(key_id, &state);
	if (key == NULL)
		elog(ERROR, "active data key %u is destroyed", key_id);
	return enc_seal_with(kind, TYPMOD_CATEGORY(typmod), TYPMOD_SEARCHABLE(typmod),
						 key_id, key, pt, len, known_tag);
}

/*
 * Open a parsed value.  Returns the plaintext in palloc'd memory (with one
 * spare byte for a terminator), or NULL when the value's key was destroyed.
 * Never returns unauthenticated bytes.
 */
static unsigned char *
enc_open(EnvelopeKind kind, EncValue *ev, size_t *len)
{
	const unsigned char *key;
	unsigned char *pt;
	const char *why = NULL;

	if (ev->hdr.key_id == PRIVACY_TRANSIENT_KEY_ID)
		key = keys_transient_key();
	else
	{
		DataKeyState state;

		key = keys_data_key(ev->hdr.key_id, &state);
		if (key == NULL)
			return NULL;
	}

	pt = palloc(ev->hdr.ciphertext_len + 1);
	if (envelope_open(pt, ev->env, ev->envlen, kind, key, &why) != 0)
	{
		pfree(pt);
		if (ev->hdr.key_id == PRIVACY_TRANSIENT_KEY_ID)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("encrypted value cannot be opened: it was sealed with another session's transient key"),
					 errdetail("Values typed in a statement are sealed with a per-session key until they are assigned to a classified column.")));
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("encrypted value failed authentication"),
				 errdetail("%s", sentence(why)),
				 errhint("The stored bytes were changed, or moved from another column, category or type.")));
	}
	if (ev->tag != NULL)
	{
		unsigned char tag[SEARCH_TAG_BYTES];

		search_tag(kind, pt, ev->hdr.ciphertext_len, tag);
		if (sodium_memcmp(tag, ev->tag, SEARCH_TAG_BYTES) != 0)
		{
			sodium_memzero(pt, ev->hdr.ciphertext_len);
			pfree(pt);
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("encrypted value failed authentication"),
					 errdetail("Its search tag does not match its content."),
					 errhint("The stored bytes were changed, or moved from another column.")));
		}
	}
	if (ev->hdr.key_id != PRIVACY_TRANSIENT_KEY_ID && types_value_opened_hook != NULL)
		types_value_opened_hook(ev->hdr.key_id, ev->hdr.category_id);
	*len = ev->hdr.ciphertext_len;
	pt[*len] = '\0';
	return pt;
}

static void
free_plaintext(unsigned char *pt, size_t len)
{
	sodium_memzero(pt, len);
	pfree(pt);
}

/* The "pv1:" text form: the envelope, and the search tag if there is one. */
static char *
enc_to_text(EncValue *ev)
{
	size_t		need = storedform_text_size(ev);
	char	   *out;

	if (need == 0 || need > MaxAllocSize)
		elog(ERROR, "could not encode an encrypted value");
	out = palloc(need);
	if (storedform_to_text(out, need, ev) != 0)
		elog(ERROR, "could not encode an encrypted value");
	return out;
}

/* The session's transient key never reaches a table. */
static void
refuse_transient(EncValue *ev, int sqlerrcode)
{
	if (ev->hdr.key_id == PRIVACY_TRANSIENT_KEY_ID)
		ereport(ERROR,
				(errcode(sqlerrcode),
				 errmsg(sqlerrcode == ERRCODE_INVALID_TEXT_REPRESENTATION ?
						"invalid encrypted value literal" : "invalid encrypted value"),
				 errdetail("The value is sealed with a session's transient key, which is never stored.")));
}

/* A "pv1:" literal from a role that may enter stored values. */
static bytea *
enc_from_text(const char *s, size_t len)
{
	size_t		room = storedform_from_text_room(len);
	bytea	   *out;
	size_t		storedlen = 0;
	const char *why = NULL;
	EncValue	ev;

	if (room == 0 || room > MaxAllocSize - VARHDRSZ)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("encrypted value literal is too long")));
	out = palloc(VARHDRSZ + room);
	if (storedform_from_text((unsigned char *) VARDATA(out), room, &storedlen, s, len, &why) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid encrypted value literal"),
				 errdetail("%s", sentence(why)),
				 errhint("A superuser or privacy_admin with no purpose declared enters stored envelopes (\"pv1:...\"); declare a purpose to enter plaintext that starts with \"pv1:\".")));
	SET_VARSIZE(out, VARHDRSZ + storedlen);
	enc_parse(out, &ev);
	refuse_transient(&ev, ERRCODE_INVALID_TEXT_REPRESENTATION);
	return out;
}

/* Stored bytes received in binary form from a role that may send them. */
static bytea *
enc_from_bytes(const char *data, int len)
{
	bytea	   *out = palloc(VARHDRSZ + len);
	EncValue	ev;
	const char *why = NULL;

	SET_VARSIZE(out, VARHDRSZ + len);
	memcpy(VARDATA(out), data, len);
	if (storedform_parse((const unsigned char *) VARDATA(out), len, &ev, &why) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("invalid encrypted value"),
				 errdetail("%s", sentence(why))));
	refuse_transient(&ev, ERRCODE_INVALID_BINARY_REPRESENTATION);
	return out;
}

static bytea *coerce_common(bytea *v, int32 typmod, EnvelopeKind kind);

typedef enum GateOutcome
{
	GATE_OPEN,					/* plaintext may be shown */
	GATE_MASK,					/* show the mask */
	GATE_CIPHERTEXT				/* show the envelope (dump/restore roles) */
} GateOutcome;

/*
 * The decryption gate.  It does not depend on row-level security, so it
 * also covers table owners, BYPASSRLS roles and values copied elsewhere.
 */
static GateOutcome
gate(EncValue *ev)
{
	const char *category;
	PurposeVerdict verdict;

	if (ciphertext_io())
		return GATE_CIPHERTEXT;
	/* a transient value is this session's own input, not stored data */
	if (ev->hdr.key_id == PRIVACY_TRANSIENT_KEY_ID)
		return GATE_OPEN;
	category = category_name_or_error(ev->hdr.category_id);
	verdict = consent_purpose_verdict(category);
	if (verdict == PURPOSE_ALLOWED)
		return GATE_OPEN;
	if (privacy_on_denied == ON_DENIED_MASK)
	{
		consent_note_refusal(verdict, category, false);
		return GATE_MASK;
	}
	consent_refuse(verdict, category);	/* raises the precise error */
	return GATE_MASK;
}

/* ------------------------------------------------------------------------
 * I/O
 * ------------------------------------------------------------------------
 */
PG_FUNCTION_INFO_V1(encrypted_text_in);
Datum
encrypted_text_in(PG_FUNCTION_ARGS)
{
	char	   *s = PG_GETARG_CSTRING(0);
	int32		typmod = PG_GETARG_INT32(2);
	size_t		len = strlen(s);

	if (envelope_text_has_prefix(s, len) && ciphertext_io())
		PG_RETURN_BYTEA_P(enc_from_text(s, len));	/* stored as is: a restore */
	PG_RETURN_BYTEA_P(enc_seal(ENVELOPE_TEXT, typmod, (unsigned char *) s, len, NULL));
}

static char *
text_output(bytea *v)
{
	EncValue	ev;
	unsigned char *pt;
	size_t		len;
	char	   *out;

	enc_parse(v, &ev);
	switch (gate(&ev))
	{
		case GATE_CIPHERTEXT:
			return enc_to_text(&ev);
		case GATE_MASK:
			return pstrdup(TEXT_MASK);
		case GATE_OPEN:
			break;
	}
	pt = enc_open(ENVELOPE_TEXT, &ev, &len);
	if (pt == NULL)
		return pstrdup(TEXT_ERASED);
	out = pnstrdup((char *) pt, len);
	free_plaintext(pt, len);
	return out;
}

PG_FUNCTION_INFO_V1(encrypted_text_out);
Datum
encrypted_text_out(PG_FUNCTION_ARGS)
{
	PG_RETURN_CSTRING(text_output(PG_GETARG_BYTEA_PP(0)));
}

PG_FUNCTION_INFO_V1(encrypted_bytea_in);
Datum
encrypted_bytea_in(PG_FUNCTION_ARGS)
{
	char	   *s = PG_GETARG_CSTRING(0);
	int32		typmod = PG_GETARG_INT32(2);
	size_t		len = strlen(s);
	bytea	   *plain;
	bytea	   *out;

	if (envelope_text_has_prefix(s, len) && ciphertext_io())
		PG_RETURN_BYTEA_P(enc_from_text(s, len));
	plain = DatumGetByteaPP(DirectFunctionCall1(byteain, CStringGetDatum(s)));
	out = enc_seal(ENVELOPE_BYTEA, typmod, (unsigned char *) VARDATA_ANY(plain),
				   VARSIZE_ANY_EXHDR(plain), NULL);
	sodium_memzero(VARDATA_ANY(plain), VARSIZE_ANY_EXHDR(plain));
	PG_RETURN_BYTEA_P(out);
}

static bytea *
bytea_output(bytea *v, bool *ciphertext, char **cipher_text)
{
	EncValue	ev;
	unsigned char *pt;
	size_t		len;
	bytea	   *out;

	*ciphertext = false;
	enc_parse(v, &ev);
	switch (gate(&ev))
	{
		case GATE_CIPHERTEXT:
			*ciphertext = true;
			*cipher_text = enc_to_text(&ev);
			return NULL;
		case GATE_MASK:
			out = palloc(VARHDRSZ);
			SET_VARSIZE(out, VARHDRSZ);
			return out;
		case GATE_OPEN:
			break;
	}
	pt = enc_open(ENVELOPE_BYTEA, &ev, &len);
	if (pt == NULL)
	{
		out = palloc(VARHDRSZ);
		SET_VARSIZE(out, VARHDRSZ);
		return out;
	}
	out = palloc(VARHDRSZ + len);
	SET_VARSIZE(out, VARHDRSZ + len);
	memcpy(VARDATA(out), pt, len);
	free_plaintext(pt, len);
	return out;
}

PG_FUNCTION_INFO_V1(encrypted_bytea_out);
Datum
encrypted_bytea_out(PG_FUNCTION_ARGS)
{
	bool		ciphertext;
	char	   *cipher_text = NULL;
	bytea	   *plain = bytea_output(PG_GETARG_BYTEA_PP(0), &ciphertext, &cipher_text);

	if (ciphertext)
		PG_RETURN_CSTRING(cipher_text);
	return DirectFunctionCall1(byteaout, PointerGetDatum(plain));
}

/*
 * Binary receive: stored bytes from the dump/restore roles (binary COPY,
 * logical replication apply), plaintext to seal from everyone else.
 */
static bytea *
recv_common(StringInfo buf, int32 typmod, EnvelopeKind kind)
{
	if (ciphertext_io())
	{
		int			len = buf->len - buf->cursor;
		const char *data = pq_getmsgbytes(buf, len);

		return enc_from_bytes(data, len);
	}
	if (kind == ENVELOPE_TEXT)
	{
		int			nbytes;
		char	   *str = pq_getmsgtext(buf, buf->len - buf->cursor, &nbytes);
		bytea	   *out = enc_seal(kind, typmod, (unsigned char *) str, nbytes, NULL);

		sodium_memzero(str, nbytes);
		return out;
	}
	else
	{
		int			len = buf->len - buf->cursor;
		const char *data = pq_getmsgbytes(buf, len);

		return enc_seal(kind, typmod, (const unsigned char *) data, len, NULL);
	}
}

PG_FUNCTION_INFO_V1(encrypted_text_recv);
Datum
encrypted_text_recv(PG_FUNCTION_ARGS)
{
	PG_RETURN_BYTEA_P(recv_common((StringInfo) PG_GETARG_POINTER(0), PG_GETARG_INT32(2), ENVELOPE_TEXT));
}

PG_FUNCTION_INFO_V1(encrypted_bytea_recv);
Datum
encrypted_bytea_recv(PG_FUNCTION_ARGS)
{
	PG_RETURN_BYTEA_P(recv_common((StringInfo) PG_GETARG_POINTER(0), PG_GETARG_INT32(2), ENVELOPE_BYTEA));
}

/*
 * Binary send follows the rule of text output: the stored bytes for the
 * dump/restore roles (binary COPY, logical replication), plaintext through
 * the gate for everyone else, so binary COPY out and back in round-trips.
 */
static bytea *
send_common(bytea *v, EnvelopeKind kind)
{
	StringInfoData buf;
	EncValue	ev;

	pq_begintypsend(&buf);
	if (ciphertext_io())
	{
		enc_parse(v, &ev);
		if (ev.hdr.key_id == PRIVACY_TRANSIENT_KEY_ID)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot send an unstored encrypted value in binary form"),
					 errhint("Declare a purpose to receive its plaintext, or store it in a classified column first.")));
		pq_sendbytes(&buf, VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v));
	}
	else if (kind == ENVELOPE_TEXT)
	{
		char	   *s = text_output(v);
		size_t		len = strlen(s);

		pq_sendtext(&buf, s, len);
		free_plaintext((unsigned char *) s, len);
	}
	else
	{
		bool		ciphertext;
		char	   *cipher_text = NULL;
		bytea	   *plain = bytea_output(v, &ciphertext, &cipher_text);

		pq_sendbytes(&buf, VARDATA_ANY(plain), VARSIZE_ANY_EXHDR(plain));
		free_plaintext((unsigned char *) plain, VARSIZE(plain));
	}
	return pq_endtypsend(&buf);
}

PG_FUNCTION_INFO_V1(encrypted_send);
Datum
encrypted_send(PG_FUNCTION_ARGS)
{
	PG_RETURN_BYTEA_P(send_common(PG_GETARG_BYTEA_PP(0), ENVELOPE_TEXT));
}

PG_FUNCTION_INFO_V1(encrypted_bytea_send);
Datum
encrypted_bytea_send(PG_FUNCTION_ARGS)
{
	PG_RETURN_BYTEA_P(send_common(PG_GETARG_BYTEA_PP(0), ENVELOPE_BYTEA));
}

/* ------------------------------------------------------------------------
 * Type modifiers: the category, and whether equality search is enabled
 * ------------------------------------------------------------------------
 */
PG_FUNCTION_INFO_V1(encrypted_typmod_in);
Datum
encrypted_typmod_in(PG_FUNCTION_ARGS)
{
	ArrayType  *ta = PG_GETARG_ARRAYTYPE_P(0);
	Datum	   *elems;
	const char *items[2] = {NULL, NULL};
	int			n;
	int			i;
	int32		typmod = -1;

	deconstruct_array(ta, CSTRINGOID, -2, false, TYPALIGN_CHAR, &elems, NULL, &n);
	for (i = 0; i < n && i < 2; i++)
		items[i] = DatumGetCString(elems[i]);
	switch (typmod_parse(items, n, &typmod))
	{
		case TYPMOD_OK:
			break;
		case TYPMOD_BAD_COUNT:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid type modifier for an encrypted type"),
					 errhint("Write privacy.encrypted_text(category) or privacy.encrypted_text(category, searchable).")));
			break;
		case TYPMOD_ID_OUT_OF_RANGE:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("category id %s is out of range", items[0]),
					 errhint("A category id is a number from 1 to 65535.")));
			break;
		case TYPMOD_NAME_CHARACTER:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid category name \"%s\" in type modifier", items[0]),
					 errhint("Category names are lower-case identifiers, such as contact or financial.")));
			break;
		case TYPMOD_NAME_LENGTH:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid category name in type modifier"),
					 errdetail("A category name has 1 to %d bytes.", TYPMOD_NAME_MAX)));
			break;
		case TYPMOD_UNKNOWN_OPTION:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid type modifier \"%s\" for an encrypted type", items[1]),
					 errhint("The only option is searchable, which enables equality search (and its leakage).")));
			break;
	}
	PG_RETURN_INT32(typmod);
}

PG_FUNCTION_INFO_V1(encrypted_typmod_out);
Datum
encrypted_typmod_out(PG_FUNCTION_ARGS)
{
	int32		typmod = PG_GETARG_INT32(0);
	const char *name = NULL;
	char	   *out;

	if (typmod < 0)
		PG_RETURN_CSTRING(pstrdup(""));
	/* the category table may be absent while an extension is dropped */
	if (OidIsValid(get_namespace_oid(PRIVACY_SCHEMA, true)))
		name = catalog_category_name(TYPMOD_CATEGORY(typmod));
	if (name != NULL)
		out = psprintf("(%s%s)", name, TYPMOD_SEARCHABLE(typmod) ? ",searchable" : "");
	else
		out = psprintf("(%u%s)", TYPMOD_CATEGORY(typmod), TYPMOD_SEARCHABLE(typmod) ? ",searchable" : "");
	PG_RETURN_CSTRING(out);
}

/*
 * Assignment to a column: reseal a transient value under the column's
 * category key, or move a stored value to another category.  Moving a
 * stored value is disclosure-equivalent (the target category may be readable
 * where the source is not), so it needs a purpose allowed the source
 * category, or a dump/restore role.
 */
static bytea *
coerce_common(bytea *v, int32 typmod, EnvelopeKind kind)
{
	EncValue	ev;
	uint16		target;
	bool		searchable;
	unsigned char *pt;
	size_t		len;
	bytea	   *out;

	if (typmod < 0)
		return v;
	enc_parse(v, &ev);
	target = TYPMOD_CATEGORY(typmod);
	searchable = TYPMOD_SEARCHABLE(typmod);

	if (ev.hdr.key_id != PRIVACY_TRANSIENT_KEY_ID && ev.hdr.category_id == target)
	{
		if (searchable == (ev.tag != NULL) && ev.format != STOREDFORM_SEARCHABLE_TAG_FIRST)
			return v;
		if (!searchable || ev.tag != NULL)
		{
			/*
			 * Drop the search tag, or move it behind the envelope (0.2's
			 * layout): no need to open.
			 */
			size_t		n = storedform_size(ev.envlen, searchable);

			out = palloc(VARHDRSZ + n);
			SET_VARSIZE(out, VARHDRSZ + n);
			storedform_write((unsigned char *) VARDATA(out), ev.env, ev.envlen,
							 searchable ? ev.tag : NULL);
			return out;
		}
	}
	else if (ev.hdr.key_id != PRIVACY_TRANSIENT_KEY_ID)
	{
		const char *source = category_name_or_error(ev.hdr.category_id);
		PurposeVerdict verdict = privileged_role() ? PURPOSE_ALLOWED : consent_purpose_verdict(source);

		consent_note_refusal(verdict, source, true);
		if (verdict != PURPOSE_ALLOWED)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("cannot move an encrypted value from category \"%s\" to category \"%s\"",
							source, category_name_or_error(target)),
					 errdetail("Moving a value to another category could make it readable where its own category is not."),
					 errhint("Declare a purpose that is allowed category \"%s\", or have a privacy_admin reclassify the column.", source)));
	}

	/*
	 * Adding a search tag opens the value too: computing the tag of a value
	 * its reader may not open would turn any column into an equality oracle.
	 * So every stored value opened here passes the gate (the dump/restore
	 * roles aside, who reclassify columns).
	 */
	if (ev.hdr.key_id != PRIVACY_TRANSIENT_KEY_ID && !privileged_role())
		consent_require_purpose(category_name_or_error(ev.hdr.category_id));

	pt = enc_open(kind, &ev, &len);
	if (pt == NULL)
		return v;				/* erased: nothing left to reseal */
	if (ev.hdr.key_id != PRIVACY_TRANSIENT_KEY_ID && !keys_is_category_key(ev.hdr.key_id))
	{
		/*
		 * A subject's value (from a protected table) stays under its
		 * subject's key, whatever column it is copied to: under the target
		 * category's key it would outlive the subject's erasure.  Subject
		 * keys are not tied to a category.
		 */
		DataKeyState state;
		const unsigned char *key;

		(void) column_category(typmod);
		key = keys_data_key(ev.hdr.key_id, &state);
		if (key == NULL)
			elog(ERROR, "data key %u was destroyed while a value was resealed", ev.hdr.key_id);
		out = enc_seal_with(kind, target, searchable, ev.hdr.key_id, key, pt, len, ev.tag);
	}
	else
		out = enc_seal(kind, typmod, pt, len, ev.tag);
	free_plaintext(pt, len);
	return out;
}

PG_FUNCTION_INFO_V1(encrypted_text_typmod);
Datum
encrypted_text_typmod(PG_FUNCTION_ARGS)
{
	PG_RETURN_BYTEA_P(coerce_common(PG_GETARG_BYTEA_PP(0), PG_GETARG_INT32(1), ENVELOPE_TEXT));
}

PG_FUNCTION_INFO_V1(encrypted_bytea_typmod);
Datum
encrypted_bytea_typmod(PG_FUNCTION_ARGS)
{
	PG_RETURN_BYTEA_P(coerce_common(PG_GETARG_BYTEA_PP(0), PG_GETARG_INT32(1), ENVELOPE_BYTEA));
}

/* ------------------------------------------------------------------------
 * Casts to and from the plain types
 * ------------------------------------------------------------------------
 */
/*
 * A cast from a plain value follows the input function's rule: an envelope
 * in text form from a dump/restore role is the stored value, anything else
 * is plaintext to seal.
 */
static bytea *
from_plain(const char *data, size_t len, int32 typmod, EnvelopeKind kind)
{
	if (envelope_text_has_prefix(data, len) && ciphertext_io())
		return coerce_common(enc_from_text(data, len), typmod, kind);
	return enc_seal(kind, typmod, (const unsigned char *) data, len, NULL);
}

PG_FUNCTION_INFO_V1(text_to_encrypted_text);
Datum
text_to_encrypted_text(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);

	PG_RETURN_BYTEA_P(from_plain(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), PG_GETARG_INT32(1), ENVELOPE_TEXT));
}

PG_FUNCTION_INFO_V1(bytea_to_encrypted_bytea);
Datum
bytea_to_encrypted_bytea(PG_FUNCTION_ARGS)
{
	bytea	   *b = PG_GETARG_BYTEA_PP(0);

	PG_RETURN_BYTEA_P(from_plain(VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b), PG_GETARG_INT32(1), ENVELOPE_BYTEA));
}

/*
 * Plaintext being encrypted is never taken for an envelope: classify()
 * converts a plain column with these, so that "pv1:..." text a role planted
 * in the column (a value from a stolen dump, say) is sealed like any other
 * text, not adopted as the stored value it describes.
 */
PG_FUNCTION_INFO_V1(privacy_seal_text);
Datum
privacy_seal_text(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);

	PG_RETURN_BYTEA_P(enc_seal(ENVELOPE_TEXT, -1, (const unsigned char *) VARDATA_ANY(t),
							   VARSIZE_ANY_EXHDR(t), NULL));
}

PG_FUNCTION_INFO_V1(privacy_seal_bytea);
Datum
privacy_seal_bytea(PG_FUNCTION_ARGS)
{
	bytea	   *b = PG_GETARG_BYTEA_PP(0);

	PG_RETURN_BYTEA_P(enc_seal(ENVELOPE_BYTEA, -1, (const unsigned char *) VARDATA_ANY(b),
							   VARSIZE_ANY_EXHDR(b), NULL));
}

PG_FUNCTION_INFO_V1(encrypted_text_to_text);
Datum
encrypted_text_to_text(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(text_output(PG_GETARG_BYTEA_PP(0))));
}

PG_FUNCTION_INFO_V1(encrypted_bytea_to_bytea);
Datum
encrypted_bytea_to_bytea(PG_FUNCTION_ARGS)
{
	bool		ciphertext;
	char	   *cipher_text = NULL;
	bytea	   *plain = bytea_output(PG_GETARG_BYTEA_PP(0), &ciphertext, &cipher_text);

	if (ciphertext)
		PG_RETURN_BYTEA_P((bytea *) cstring_to_text(cipher_text));
	PG_RETURN_BYTEA_P(plain);
}

/* ------------------------------------------------------------------------
 * Equality search: operators compare search tags, never plaintext
 * ------------------------------------------------------------------------
 */
/*
 * Comparing is processing: a stored value is compared only for a purpose
 * allowed its category (or by the dump/restore roles, and so by index builds
 * they run), otherwise equality would let anyone test guesses.
 */
static const unsigned char *
tag_of(bytea *v)
{
	EncValue	ev;

	enc_parse(v, &ev);
	/*
	 * The extension's own writes into a user's table (erasure, purge,
	 * reseal) maintain the table's indexes, which compare tags: that tells
	 * the officer running them nothing, and opens nothing.
	 */
	if (ev.hdr.key_id != PRIVACY_TRANSIENT_KEY_ID && !ciphertext_io() &&
		catalog_maintenance_depth == 0)
	{
		const char *category = category_name_or_error(ev.hdr.category_id);

		consent_refuse(consent_purpose_verdict(category), category);
	}
	if (ev.tag == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("equality search is not enabled for this encrypted column"),
				 errdetail("Only columns classified as searchable keep the blind index that comparisons use."),
				 errhint("Enable it with privacy.classify(table, column, category, searchable => true); equal values then become linkable, see the documentation.")));
	return ev.tag;
}

static int
tag_cmp(FunctionCallInfo fcinfo)
{
	bytea	   *a = PG_GETARG_BYTEA_PP(0);
	bytea	   *b = PG_GETARG_BYTEA_PP(1);

	return memcmp(tag_of(a), tag_of(b), SEARCH_TAG_BYTES);
}

PG_FUNCTION_INFO_V1(encrypted_eq);
Datum
encrypted_eq(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(tag_cmp(fcinfo) == 0);
}

PG_FUNCTION_INFO_V1(encrypted_ne);
Datum
encrypted_ne(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(tag_cmp(fcinfo) != 0);
}

PG_FUNCTION_INFO_V1(encrypted_lt);
Datum
encrypted_lt(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(tag_cmp(fcinfo) < 0);
}

PG_FUNCTION_INFO_V1(encrypted_le);
Datum
encrypted_le(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(tag_cmp(fcinfo) <= 0);
}

PG_FUNCTION_INFO_V1(encrypted_gt);
Datum
encrypted_gt(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(tag_cmp(fcinfo) > 0);
}

PG_FUNCTION_INFO_V1(encrypted_ge);
Datum
encrypted_ge(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(tag_cmp(fcinfo) >= 0);
}

PG_FUNCTION_INFO_V1(encrypted_cmp);
Datum
encrypted_cmp(PG_FUNCTION_ARGS)
{
	int			c = tag_cmp(fcinfo);

	PG_RETURN_INT32(c < 0 ? -1 : (c > 0 ? 1 : 0));
}

PG_FUNCTION_INFO_V1(encrypted_hash);
Datum
encrypted_hash(PG_FUNCTION_ARGS)
{
	return hash_any(tag_of(PG_GETARG_BYTEA_PP(0)), SEARCH_TAG_BYTES);
}

PG_FUNCTION_INFO_V1(encrypted_hash_extended);
Datum
encrypted_hash_extended(PG_FUNCTION_ARGS)
{
	return hash_any_extended(tag_of(PG_GETARG_BYTEA_PP(0)), SEARCH_TAG_BYTES, PG_GETARG_INT64(1));
}

/*
 * The search tag a shredded value keeps: derived from its nonce, so that it
 * equals no plaintext's tag, stays the same however often it is computed,
 * and shows whether a value was shredded already.
 */
static void
shredded_tag(const EncValue *ev, unsigned char *out)
{
	unsigned char key[crypto_generichash_KEYBYTES];
	static const char label[] = "privacy shredded search tag";
	crypto_generichash_state st;

	keys_search_key(key, sizeof(key));
	crypto_generichash_init(&st, key, sizeof(key), SEARCH_TAG_BYTES);
	crypto_generichash_update(&st, (const unsigned char *) label, sizeof(label));
	crypto_generichash_update(&st, ev->hdr.nonce, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
	crypto_generichash_final(&st, out, SEARCH_TAG_BYTES);
	sodium_memzero(key, sizeof(key));
}

/*
 * Erasure destroys a subject's key, which shreds the value's ciphertext but
 * not its search tag: an equality search would still find the erased row.
 * The erasure therefore replaces the tag of the subject's values in
 * protected tables, before their key goes; reencrypt does the same to
 * copies elsewhere whose key is destroyed.  Needs no plaintext.
 */
static bytea *
shred_tag_common(bytea *v)
{
	EncValue	ev;
	unsigned char tag[SEARCH_TAG_BYTES];
	bytea	   *out;

	enc_parse(v, &ev);
	if (ev.tag == NULL || ev.hdr.key_id == PRIVACY_TRANSIENT_KEY_ID)
		return v;
	shredded_tag(&ev, tag);
	if (memcmp(tag, ev.tag, SEARCH_TAG_BYTES) == 0)
		return v;
	out = (bytea *) palloc(VARHDRSZ + VARSIZE_ANY_EXHDR(v));
	SET_VARSIZE(out, VARHDRSZ + VARSIZE_ANY_EXHDR(v));
	memcpy(VARDATA(out), VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v));
	memcpy((unsigned char *) VARDATA(out) + (ev.tag - (const unsigned char *) VARDATA_ANY(v)),
		   tag, SEARCH_TAG_BYTES);
	return out;
}

PG_FUNCTION_INFO_V1(privacy_shred_tag);
Datum
privacy_shred_tag(PG_FUNCTION_ARGS)
{
	PG_RETURN_BYTEA_P(shred_tag_common(PG_GETARG_BYTEA_PP(0)));
}

/*
 * privacy_internal.live_search_tag(value): whether the value carries a
 * search tag an equality search can still match, one shred_tag has not
 * replaced.  Opens nothing.
 */
PG_FUNCTION_INFO_V1(privacy_live_search_tag);
Datum
privacy_live_search_tag(PG_FUNCTION_ARGS)
{
	EncValue	ev;
	unsigned char tag[SEARCH_TAG_BYTES];
	bool		live;

	enc_parse(PG_GETARG_BYTEA_PP(0), &ev);
	if (ev.tag == NULL)
		PG_RETURN_BOOL(false);
	if (ev.hdr.key_id == PRIVACY_TRANSIENT_KEY_ID)
		PG_RETURN_BOOL(true);
	shredded_tag(&ev, tag);
	live = sodium_memcmp(tag, ev.tag, SEARCH_TAG_BYTES) != 0;
	sodium_memzero(tag, sizeof(tag));
	PG_RETURN_BOOL(live);
}

/* ------------------------------------------------------------------------
 * Inspection and maintenance
 * ------------------------------------------------------------------------
 */
PG_FUNCTION_INFO_V1(encrypted_info);
Datum
encrypted_info(PG_FUNCTION_ARGS)
{
	bytea	   *v = PG_GETARG_BYTEA_PP(0);
	EncValue	ev;
	TupleDesc	tupdesc;
	Datum		values[6];
	bool		nulls[6] = {false, false, false, false, false, false};
	const char *cat;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	enc_parse(v, &ev);
	cat = catalog_category_name(ev.hdr.category_id);
	values[0] = Int32GetDatum(ev.hdr.version);
	if (ev.hdr.key_id == PRIVACY_TRANSIENT_KEY_ID)
		nulls[1] = true;
	else
		values[1] = Int32GetDatum((int32) ev.hdr.key_id);
	if (cat)
		values[2] = CStringGetTextDatum(cat);
	else
		nulls[2] = true;
	values[3] = BoolGetDatum(ev.tag != NULL);
	values[4] = Int32GetDatum((int32) VARSIZE_ANY_EXHDR(v));
	values[5] = Int32GetDatum((int32) ev.hdr.ciphertext_len);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

PG_FUNCTION_INFO_V1(encrypted_is_erased);
Datum
encrypted_is_erased(PG_FUNCTION_ARGS)
{
	EncValue	ev;
	DataKeyState state;

	enc_parse(PG_GETARG_BYTEA_PP(0), &ev);
	if (ev.hdr.key_id == PRIVACY_TRANSIENT_KEY_ID)
		PG_RETURN_BOOL(false);
	keys_require_master_key();
	PG_RETURN_BOOL(keys_data_key(ev.hdr.key_id, &state) == NULL);
}

/*
 * A searchable value stored by 0.2 (its tag before the envelope) in the
 * current layout: the same bytes moved, nothing opened.  Any other value
 * is returned as it is.
 */
static bytea *
current_layout(bytea *v)
{
	EncValue	ev;
	size_t		n;
	bytea	   *out;

	enc_parse(v, &ev);
	if (ev.format != STOREDFORM_SEARCHABLE_TAG_FIRST)
		return v;
	n = storedform_size(ev.envlen, true);
	out = palloc(VARHDRSZ + n);
	SET_VARSIZE(out, VARHDRSZ + n);
	storedform_write((unsigned char *) VARDATA(out), ev.env, ev.envlen, ev.tag);
	return out;
}

/*
 * Reseal a stored value under the active key of its category (key rotation).
 * Subject-key values and values already under the active key keep their
 * envelope; 0.2's layout is rewritten (current_layout).  Not disclosure:
 * the category does not change.
 */
static bytea *
reseal_common(bytea *v, EnvelopeKind kind)
{
	EncValue	ev;
	const char *cat;
	uint32		active;
	unsigned char *pt;
	size_t		len;
	bytea	   *out;
	int32		typmod;

	v = current_layout(v);
	enc_parse(v, &ev);
	if (ev.hdr.key_id == PRIVACY_TRANSIENT_KEY_ID)
		return v;
	cat = category_name_or_error(ev.hdr.category_id);
	active = keys_category_key(cat);
	if (ev.hdr.key_id == active)
		return v;
	{
		DataKeyState state;

		if (keys_data_key(ev.hdr.key_id, &state) == NULL)
			return shred_tag_common(v);	/* erased: its search tag goes too */
		(void) state;
	}
	/* only category-scoped keys rotate this way; leave subject keys alone */
	if (!keys_is_category_key(ev.hdr.key_id))
		return v;
	pt = enc_open(kind, &ev, &len);
	if (pt == NULL)
		return v;
	typmod = MAKE_TYPMOD(ev.hdr.category_id, ev.tag != NULL);
	out = enc_seal(kind, typmod, pt, len, ev.tag);
	free_plaintext(pt, len);
	return out;
}

PG_FUNCTION_INFO_V1(encrypted_text_reseal);
Datum
encrypted_text_reseal(PG_FUNCTION_ARGS)
{
	PG_RETURN_BYTEA_P(reseal_common(PG_GETARG_BYTEA_PP(0), ENVELOPE_TEXT));
}

PG_FUNCTION_INFO_V1(encrypted_bytea_reseal);
Datum
encrypted_bytea_reseal(PG_FUNCTION_ARGS)
{
	PG_RETURN_BYTEA_P(reseal_common(PG_GETARG_BYTEA_PP(0), ENVELOPE_BYTEA));
}

PG_FUNCTION_INFO_V1(encrypted_needs_reseal);
Datum
encrypted_needs_reseal(PG_FUNCTION_ARGS)
{
	EncValue	ev;
	DataKeyState state;
	bytea	   *v = PG_GETARG_BYTEA_PP(0);

	enc_parse(v, &ev);
	if (ev.hdr.key_id == PRIVACY_TRANSIENT_KEY_ID)
		PG_RETURN_BOOL(false);
	if (ev.format == STOREDFORM_SEARCHABLE_TAG_FIRST)
		PG_RETURN_BOOL(true);	/* 0.2's layout */
	if (keys_data_key(ev.hdr.key_id, &state) == NULL)
		PG_RETURN_BOOL(shred_tag_common(v) != v);	/* erased, tag not yet shredded */
	if (ev.hdr.key_id == keys_category_key(category_name_or_error(ev.hdr.category_id)))
		PG_RETURN_BOOL(false);
	PG_RETURN_BOOL(keys_is_category_key(ev.hdr.key_id));
}

/*
 * privacy_internal.under_category_key(value): whether a stored value is
 * still sealed under a category's key, which is what the reseal of a newly
 * protected table moves under its subject's key (rows the application
 * wrote since are under it already, and are left alone).  Opens nothing.
 */
PG_FUNCTION_INFO_V1(encrypted_under_category_key);
Datum
encrypted_under_category_key(PG_FUNCTION_ARGS)
{
	EncValue	ev;

	enc_parse(PG_GETARG_BYTEA_PP(0), &ev);
	if (ev.hdr.key_id == PRIVACY_TRANSIENT_KEY_ID)
		PG_RETURN_BOOL(false);
	PG_RETURN_BOOL(keys_is_category_key(ev.hdr.key_id));
}

/*
 * Reseal a value under its subject's key, keeping its category: the
 * primitive behind protected tables, where destroying a subject's key
 * shreds every copy of that subject's values.  Not disclosure: the category
 * does not change.
 */
static bytea *
subject_seal_common(bytea *v, text *subject, uint32 *subject_key, unsigned char *hash,
					EnvelopeKind kind, bool guarded)
{
	EncValue	ev;
	unsigned char *pt;
	size_t		len;
	uint32		key_id;
	const unsigned char *key;
	DataKeyState state;
	bytea	   *out;

	enc_parse(v, &ev);
	/* looked up once per row, on its first encrypted value */
	if (*subject_key == 0)
	{
		keys_subject_hash(VARDATA_ANY(subject), VARSIZE_ANY_EXHDR(subject), hash);
		*subject_key = keys_subject_key_hashed(hash, false);
	}
	if (*subject_key != 0 && ev.hdr.key_id == *subject_key)
		return v;
	if (ev.hdr.key_id != PRIVACY_TRANSIENT_KEY_ID && !keys_is_category_key(ev.hdr.key_id))
	{
		/* under a subject's key: this subject's (an earlier one) or another's */
		const unsigned char *owner = keys_key_subject(ev.hdr.key_id);

		if (owner != NULL && sodium_memcmp(owner, hash, PRIVACY_SUBJECT_HASH_BYTES) == 0)
		{
			/* this subject's value, erased: it stays shredded, no new key */
			if (keys_data_key(ev.hdr.key_id, &state) == NULL)
				return v;
		}
		else if (guarded && !privileged_role())
		{
			/*
			 * Another subject's value written into this subject's row: it
			 * would be resealed under this subject's key, out of reach of
			 * the other's erasure, and shown under this subject's consent.
			 * Only a session that may open it moves it.
			 */
			consent_require_purpose(category_name_or_error(ev.hdr.category_id));
		}
	}
	if (*subject_key == 0)
		*subject_key = keys_subject_key_hashed(hash, true);
	key_id = *subject_key;
	pt = enc_open(kind, &ev, &len);
	if (pt == NULL)
		return v;				/* erased already */
	key = keys_data_key(key_id, &state);
	if (key == NULL)
		elog(ERROR, "active data key %u is destroyed", key_id);
	out = enc_seal_with(kind, ev.hdr.category_id, ev.tag != NULL, key_id, key, pt, len, ev.tag);
	free_plaintext(pt, len);
	return out;
}

PG_FUNCTION_INFO_V1(encrypted_text_seal_for_subject);
Datum
encrypted_text_seal_for_subject(PG_FUNCTION_ARGS)
{
	uint32		subject_key = 0;
	unsigned char hash[PRIVACY_SUBJECT_HASH_BYTES];

	PG_RETURN_BYTEA_P(subject_seal_common(PG_GETARG_BYTEA_PP(0), PG_GETARG_TEXT_PP(1), &subject_key, hash, ENVELOPE_TEXT, false));
}

PG_FUNCTION_INFO_V1(encrypted_bytea_seal_for_subject);
Datum
encrypted_bytea_seal_for_subject(PG_FUNCTION_ARGS)
{
	uint32		subject_key = 0;
	unsigned char hash[PRIVACY_SUBJECT_HASH_BYTES];

	PG_RETURN_BYTEA_P(subject_seal_common(PG_GETARG_BYTEA_PP(0), PG_GETARG_TEXT_PP(1), &subject_key, hash, ENVELOPE_BYTEA, false));
}

/*
 * Every encrypted type and the envelope kind of its values.  The typed ones
 * (types.c, below) keep their base type's binary send form as plaintext.
 */
static const struct
{
	const char *name;
	EnvelopeKind kind;
}			encrypted_types[] = {
	{"encrypted_text", ENVELOPE_TEXT},
	{"encrypted_bytea", ENVELOPE_BYTEA},
	{"encrypted_date", ENVELOPE_DATE},
	{"encrypted_timestamptz", ENVELOPE_TIMESTAMPTZ},
	{"encrypted_numeric", ENVELOPE_NUMERIC},
	{"encrypted_integer", ENVELOPE_INT4},
	{"encrypted_bigint", ENVELOPE_INT8},
	{"encrypted_jsonb", ENVELOPE_JSONB},
};
#define N_ENCRYPTED_TYPES lengthof(encrypted_types)

/* The name of the i-th encrypted type (NULL past the last), for redact.c. */
const char *
types_encrypted_type_name(int i)
{
	return i >= 0 && i < (int) N_ENCRYPTED_TYPES ? encrypted_types[i].name : NULL;
}

/*
 * The envelope kind of an encrypted type, 0 for any other type; the OIDs
 * are looked up once per catalog generation.
 */
int
types_encrypted_kind(Oid type)
{
	static Oid	cached[N_ENCRYPTED_TYPES];
	static uint64 cached_generation = 0;
	static bool cached_valid = false;
	int			i;

	if (!OidIsValid(type))
		return 0;
	catalog_accept_invalidations();
	if (!cached_valid || cached_generation != catalog_generation || !OidIsValid(cached[0]))
	{
		Oid			nsp = catalog_namespace();

		for (i = 0; i < (int) N_ENCRYPTED_TYPES; i++)
			cached[i] = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
										CStringGetDatum(encrypted_types[i].name),
										ObjectIdGetDatum(nsp));
		cached_generation = catalog_generation;
		cached_valid = true;
	}
	for (i = 0; i < (int) N_ENCRYPTED_TYPES; i++)
		if (cached[i] == type)
			return encrypted_types[i].kind;
	return 0;
}

/*
 * BEFORE INSERT OR UPDATE row trigger of protected tables (argument: the
 * subject column): every encrypted value of the row is resealed under the
 * subject's key, so that destroying that key shreds the subject's data
 * everywhere.  A restore's values are taken verbatim (a dump/restore role,
 * no purpose declared, and row_security off, as pg_restore and pg_dump's
 * scripts set it): they are already sealed, and resealing them is how
 * restores double-encrypt data (pgsodium #109), and the cluster restored
 * into may not hold their keys.  The same role in an ordinary session
 * (envelopes copied from another table, say) gets them resealed like
 * anyone else's, or erasure could not shred them.
 */
PG_FUNCTION_INFO_V1(privacy_seal_row);
Datum
privacy_seal_row(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	tupdesc;
	HeapTuple	tuple;
	int			subject_att;
	bool		isnull;
	Datum		subject_datum;
	text	   *subject;
	uint32		subject_key = 0;
	unsigned char subject_hash[PRIVACY_SUBJECT_HASH_BYTES];
	int			natts;
	int			i;
	Datum	   *values;
	bool	   *nulls;
	bool	   *replace;
	bool		changed = false;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) || trigdata->tg_trigger->tgnargs != 1)
		elog(ERROR, "privacy_internal.seal_row() must be a BEFORE ROW trigger with the subject column as argument");
	rel = trigdata->tg_relation;
	tupdesc = RelationGetDescr(rel);
	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ? trigdata->tg_newtuple : trigdata->tg_trigtuple;

	/*
	 * Only as the extension set it up: a trigger of anyone's own making
	 * would reseal values under a decoy subject's key (which erasure then
	 * misses) and create subject keys at will.  (Partitions' clones of the
	 * trigger need it executable by their owners.)
	 */
	if (!protect_is_seal_trigger(RelationGetRelid(rel), trigdata->tg_trigger->tgname) ||
		((!catalog_protected_ready() || catalog_protected_relation(RelationGetRelid(rel)) == NULL) &&
		 !catalog_is_protected_now(RelationGetRelid(rel))))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("privacy_internal.seal_row() runs only as the trigger privacy_seal_row of a protected table"),
				 errhint("Protect the table with privacy.protect_table(), which sets the trigger up.")));

	if (ciphertext_io() && !row_security)
		return PointerGetDatum(tuple);

	subject_att = SPI_fnumber(tupdesc, trigdata->tg_trigger->tgargs[0]);
	if (subject_att <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("subject column \"%s\" of %s does not exist",
						trigdata->tg_trigger->tgargs[0], RelationGetRelationName(rel)),
				 errhint("Protect the table again with privacy.protect_table().")));
	subject_datum = heap_getattr(tuple, subject_att, tupdesc, &isnull);
	if (isnull)
		return PointerGetDatum(tuple);	/* no subject: stays under the category key */
	{
		Oid			typoutput;
		bool		typisvarlena;
		Oid			subject_type = TupleDescAttr(tupdesc, subject_att - 1)->atttypid;
		char	   *str;

		getTypeOutputInfo(subject_type, &typoutput, &typisvarlena);
		str = OidOutputFunctionCall(typoutput, subject_datum);
		/* the policy compares subject::text, which drops char(n) padding */
		if (subject_type == BPCHAROID)
		{
			int			n = strlen(str);

			while (n > 0 && str[n - 1] == ' ')
				str[--n] = '\0';
		}
		subject = cstring_to_text(str);
	}

	natts = tupdesc->natts;
	values = palloc(natts * sizeof(Datum));
	nulls = palloc(natts * sizeof(bool));
	replace = palloc0(natts * sizeof(bool));
	for (i = 0; i < natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);
		Datum		d;
		bytea	   *v;
		bytea	   *sealed;
		EnvelopeKind kind;

		if (att->attisdropped || (kind = types_encrypted_kind(att->atttypid)) == 0)
			continue;
		d = heap_getattr(tuple, i + 1, tupdesc, &isnull);
		if (isnull)
			continue;
		v = DatumGetByteaPP(d);
		sealed = subject_seal_common(v, subject, &subject_key, subject_hash, kind, true);
		if (sealed != v)
		{
			values[i] = PointerGetDatum(sealed);
			nulls[i] = false;
			replace[i] = true;
			changed = true;
		}
	}
	if (changed)
		tuple = heap_modify_tuple(tuple, tupdesc, values, nulls, replace);
	return PointerGetDatum(tuple);
}

/*
 * Does a type hold an encrypted type inside another one: an array, a
 * domain, a composite, a range?  Values in there escape the column's type
 * modifier and the seal trigger, so a session's transient key would be
 * stored with them; the event trigger refuses such columns.
 */
static bool
nests_encrypted(Oid type, int depth)
{
	Oid			elem;
	Oid			relid;

	check_stack_depth();
	if (depth > 0 && types_encrypted_kind(type) != 0)
		return true;
	if (depth > 32)
		return false;
	if (OidIsValid(elem = get_element_type(type)))
		return nests_encrypted(elem, depth + 1);
	if (get_typtype(type) == TYPTYPE_DOMAIN)
		return nests_encrypted(getBaseType(type), depth + 1);
	if (get_typtype(type) == TYPTYPE_RANGE)
		return nests_encrypted(get_range_subtype(type), depth + 1);
	if (get_typtype(type) == TYPTYPE_MULTIRANGE)
		return nests_encrypted(get_multirange_range(type), depth + 1);
	if (OidIsValid(relid = get_typ_typrelid(type)))
	{
		Relation	rel = relation_open(relid, AccessShareLock);
		TupleDesc	desc = RelationGetDescr(rel);
		bool		found = false;
		int			i;

		for (i = 0; i < desc->natts && !found; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);

			if (!att->attisdropped)
				found = nests_encrypted(att->atttypid, depth + 1);
		}
		relation_close(rel, AccessShareLock);
		return found;
	}
	return false;
}

/* For the other parts: is this type encrypted, or does it hold one inside? */
bool
types_holds_encrypted(Oid type)
{
	return nests_encrypted(type, 1);
}

/* For the other parts: is this type one of the encrypted types? */
bool
types_is_encrypted(Oid type)
{
	return types_encrypted_kind(type) != 0;
}

PG_FUNCTION_INFO_V1(privacy_nests_encrypted);
Datum
privacy_nests_encrypted(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(nests_encrypted(PG_GETARG_OID(0), 0));
}

/* The category named by an encrypted column's type modifier (NULL if none). */
PG_FUNCTION_INFO_V1(encrypted_typmod_category);
Datum
encrypted_typmod_category(PG_FUNCTION_ARGS)
{
	int32		typmod = PG_GETARG_INT32(0);
	const char *name;

	if (typmod < 0)
		PG_RETURN_NULL();
	name = catalog_category_name(TYPMOD_CATEGORY(typmod));
	if (name == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(name));
}

/*
 * ANALYZE keeps no statistics of encrypted columns: most-common values and
 * histograms would need comparisons (refused for columns without equality
 * search, and gated for the others), and would describe the distribution
 * of personal data.  The planner uses its defaults instead.
 */
PG_FUNCTION_INFO_V1(encrypted_typanalyze);
Datum
encrypted_typanalyze(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(false);
}

/* ------------------------------------------------------------------------
 * The typed encrypted types: date, timestamptz, numeric, integer, bigint,
 * jsonb.  One C function per role serves them all; which type a call is
 * for comes from the function's signature (its argument or result type,
 * or the type OID handed to input and receive), looked up once per call
 * site and kept in fn_extra.  The plaintext sealed is the base type's
 * binary send form: canonical, and independent of the session's DateStyle,
 * TimeZone or extra_float_digits, so that a value reads back the same in
 * any session (the text form would not: 01/02/2000 is two dates).
 * ------------------------------------------------------------------------
 */
typedef struct TypedBase
{
	const char *name;			/* the encrypted type */
	Oid			base;			/* its base type */
	EnvelopeKind kind;
} TypedBase;

static const TypedBase typed_bases[] = {
	{"encrypted_date", DATEOID, ENVELOPE_DATE},
	{"encrypted_timestamptz", TIMESTAMPTZOID, ENVELOPE_TIMESTAMPTZ},
	{"encrypted_numeric", NUMERICOID, ENVELOPE_NUMERIC},
	{"encrypted_integer", INT4OID, ENVELOPE_INT4},
	{"encrypted_bigint", INT8OID, ENVELOPE_INT8},
	{"encrypted_jsonb", JSONBOID, ENVELOPE_JSONB},
};

/* What a call site needs, kept in its fn_extra. */
typedef struct TypedCall
{
	const TypedBase *tb;
	Oid			enc_type;
	char	   *enc_name;		/* privacy.encrypted_date, for messages */
	FmgrInfo	base_in;
	FmgrInfo	base_out;
	FmgrInfo	base_recv;
	FmgrInfo	base_send;
	Oid			base_in_ioparam;
	Oid			base_recv_ioparam;
	Oid			arg_type;		/* a cast's source type */
	bool		arg_converts;	/* it is not the base type: cast first */
	FmgrInfo	arg_cast;
} TypedCall;

typedef enum TypedFrom
{
	TYPED_FROM_ARG1_OID,		/* input, receive: the type OID argument */
	TYPED_FROM_ARG0_TYPE,		/* the first argument is the encrypted type */
	TYPED_FROM_RESULT			/* the result is the encrypted type */
} TypedFrom;

static TypedCall *
typed_call(FunctionCallInfo fcinfo, TypedFrom from)
{
	TypedCall  *tc;
	MemoryContext old;
	HeapTuple	tup;
	Form_pg_proc proc;
	Oid			enc_type;
	Oid			arg_type;
	char	   *typname;
	int			i;

	if (fcinfo->flinfo == NULL)
		elog(ERROR, "encrypted type function called without call information");
	tc = (TypedCall *) fcinfo->flinfo->fn_extra;
	if (tc != NULL && (from != TYPED_FROM_ARG1_OID || tc->enc_type == PG_GETARG_OID(1)))
		return tc;

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fcinfo->flinfo->fn_oid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for function %u", fcinfo->flinfo->fn_oid);
	proc = (Form_pg_proc) GETSTRUCT(tup);
	arg_type = proc->pronargs > 0 ? proc->proargtypes.values[0] : InvalidOid;
	enc_type = from == TYPED_FROM_ARG1_OID ? PG_GETARG_OID(1) :
		from == TYPED_FROM_RESULT ? proc->prorettype : arg_type;
	/* an input function called by name with another type's OID */
	if (from == TYPED_FROM_ARG1_OID && enc_type != proc->prorettype)
	{
		ReleaseSysCache(tup);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("input function of %s called for type %s",
						format_type_be(proc->prorettype), format_type_be(enc_type))));
	}
	ReleaseSysCache(tup);

	typname = format_type_be(enc_type);
	tup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(enc_type));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for type %u", enc_type);
	if (((Form_pg_type) GETSTRUCT(tup))->typnamespace != catalog_namespace())
	{
		ReleaseSysCache(tup);
		elog(ERROR, "type %s is not an encrypted type", typname);
	}
	for (i = 0; i < lengthof(typed_bases); i++)
		if (strcmp(NameStr(((Form_pg_type) GETSTRUCT(tup))->typname), typed_bases[i].name) == 0)
			break;
	ReleaseSysCache(tup);
	if (i == lengthof(typed_bases))
		elog(ERROR, "type %s is not a typed encrypted type", typname);

	old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
	tc = palloc0(sizeof(TypedCall));
	tc->tb = &typed_bases[i];
	tc->enc_type = enc_type;
	tc->enc_name = pstrdup(format_type_be(enc_type));
	{
		Oid			f;

		getTypeInputInfo(tc->tb->base, &f, &tc->base_in_ioparam);
		fmgr_info_cxt(f, &tc->base_in, fcinfo->flinfo->fn_mcxt);
		getTypeBinaryInputInfo(tc->tb->base, &f, &tc->base_recv_ioparam);
		fmgr_info_cxt(f, &tc->base_recv, fcinfo->flinfo->fn_mcxt);
		{
			bool		varlena;

			getTypeOutputInfo(tc->tb->base, &f, &varlena);
			fmgr_info_cxt(f, &tc->base_out, fcinfo->flinfo->fn_mcxt);
			getTypeBinaryOutputInfo(tc->tb->base, &f, &varlena);
			fmgr_info_cxt(f, &tc->base_send, fcinfo->flinfo->fn_mcxt);
		}
		/* a cast from another type (integer to bigint, say) converts first */
		tc->arg_type = arg_type;
		if (from == TYPED_FROM_RESULT && arg_type != tc->tb->base)
		{
			CoercionPathType path = find_coercion_pathway(tc->tb->base, arg_type,
														  COERCION_EXPLICIT, &f);

			if (path != COERCION_PATH_FUNC || !OidIsValid(f))
				elog(ERROR, "no cast from %s to %s", format_type_be(arg_type),
					 format_type_be(tc->tb->base));
			fmgr_info_cxt(f, &tc->arg_cast, fcinfo->flinfo->fn_mcxt);
			tc->arg_converts = true;
		}
	}
	MemoryContextSwitchTo(old);
	fcinfo->flinfo->fn_extra = tc;
	return tc;
}

/*
 * Run a base type's input or receive function on a client's value.  Their
 * errors quote the value ('invalid input syntax for type date: "..."'),
 * which may be personal data: an error of class 22 (data exception) is
 * replaced by one that names the type and not the value, so that neither
 * the client's error nor the server log repeats it.
 */
static Datum
typed_parse(TypedCall *tc, const char *s, StringInfo buf)
{
	MemoryContext cxt = CurrentMemoryContext;
	Datum		d = (Datum) 0;

	PG_TRY();
	{
		if (buf != NULL)
			d = ReceiveFunctionCall(&tc->base_recv, buf, tc->base_recv_ioparam, -1);
		else
			d = InputFunctionCall(&tc->base_in, (char *) s, tc->base_in_ioparam, -1);
	}
	PG_CATCH();
	{
		ErrorData  *ed;

		MemoryContextSwitchTo(cxt);
		ed = CopyErrorData();
		if (ERRCODE_TO_CATEGORY(ed->sqlerrcode) != ERRCODE_DATA_EXCEPTION)
			PG_RE_THROW();
		FlushErrorState();
		ereport(ERROR,
				(errcode(ed->sqlerrcode),
				 errmsg("invalid %s value for %s", buf != NULL ? "binary" : "input",
						tc->enc_name),
				 errdetail("The value is not a valid %s; it is not repeated here, since it may be personal data.",
						   format_type_be(tc->tb->base)),
				 buf != NULL ? 0 :
				 errhint("Write it as a literal of type %s would be written.",
						 format_type_be(tc->tb->base))));
	}
	PG_END_TRY();
	return d;
}

/* Seal a base type's value for a column with this type modifier. */
static bytea *
typed_seal(TypedCall *tc, Datum d, int32 typmod)
{
	bytea	   *plain = SendFunctionCall(&tc->base_send, d);
	bytea	   *out;

	out = enc_seal(tc->tb->kind, typmod, (const unsigned char *) VARDATA(plain),
				   VARSIZE(plain) - VARHDRSZ, NULL);
	sodium_memzero(VARDATA(plain), VARSIZE(plain) - VARHDRSZ);
	return out;
}

/* A value's plaintext as the base type's datum */
static Datum
typed_datum(TypedCall *tc, unsigned char *pt, size_t len)
{
	StringInfoData buf;

	buf.data = (char *) pt;
	buf.len = (int) len;
	buf.maxlen = (int) len + 1;
	buf.cursor = 0;
	return ReceiveFunctionCall(&tc->base_recv, &buf, tc->base_recv_ioparam, -1);
}

/*
 * Open a value through the gate.  Returns the plaintext (base send form),
 * or NULL with *outcome saying why not: masked, erased, or the envelope
 * itself (the dump/restore roles).
 */
typedef enum TypedOutcome
{
	TYPED_OPEN,
	TYPED_MASKED,
	TYPED_ERASED,
	TYPED_CIPHERTEXT
} TypedOutcome;

static unsigned char *
typed_open(TypedCall *tc, bytea *v, EncValue *ev, size_t *len, TypedOutcome *outcome)
{
	unsigned char *pt;

	enc_parse(v, ev);
	switch (gate(ev))
	{
		case GATE_CIPHERTEXT:
			*outcome = TYPED_CIPHERTEXT;
			return NULL;
		case GATE_MASK:
			*outcome = TYPED_MASKED;
			return NULL;
		case GATE_OPEN:
			break;
	}
	pt = enc_open(tc->tb->kind, ev, len);
	*outcome = pt == NULL ? TYPED_ERASED : TYPED_OPEN;
	return pt;
}

PG_FUNCTION_INFO_V1(encrypted_typed_in);
Datum
encrypted_typed_in(PG_FUNCTION_ARGS)
{
	char	   *s = PG_GETARG_CSTRING(0);
	TypedCall  *tc = typed_call(fcinfo, TYPED_FROM_ARG1_OID);
	size_t		len = strlen(s);

	/* no literal of these base types starts with "pv1:" */
	if (envelope_text_has_prefix(s, len) && ciphertext_io())
		PG_RETURN_BYTEA_P(enc_from_text(s, len));
	PG_RETURN_BYTEA_P(typed_seal(tc, typed_parse(tc, s, NULL), PG_GETARG_INT32(2)));
}

PG_FUNCTION_INFO_V1(encrypted_typed_out);
Datum
encrypted_typed_out(PG_FUNCTION_ARGS)
{
	TypedCall  *tc = typed_call(fcinfo, TYPED_FROM_ARG0_TYPE);
	EncValue	ev;
	size_t		len;
	TypedOutcome outcome;
	unsigned char *pt = typed_open(tc, PG_GETARG_BYTEA_PP(0), &ev, &len, &outcome);
	char	   *out;

	switch (outcome)
	{
		case TYPED_CIPHERTEXT:
			PG_RETURN_CSTRING(enc_to_text(&ev));
		case TYPED_MASKED:
			PG_RETURN_CSTRING(pstrdup(TEXT_MASK));
		case TYPED_ERASED:
			PG_RETURN_CSTRING(pstrdup(TEXT_ERASED));
		case TYPED_OPEN:
			break;
	}
	out = OutputFunctionCall(&tc->base_out, typed_datum(tc, pt, len));
	free_plaintext(pt, len);
	PG_RETURN_CSTRING(out);
}

PG_FUNCTION_INFO_V1(encrypted_typed_recv);
Datum
encrypted_typed_recv(PG_FUNCTION_ARGS)
{
	StringInfo	buf = (StringInfo) PG_GETARG_POINTER(0);
	TypedCall  *tc = typed_call(fcinfo, TYPED_FROM_ARG1_OID);

	if (ciphertext_io())
	{
		int			len = buf->len - buf->cursor;

		PG_RETURN_BYTEA_P(enc_from_bytes(pq_getmsgbytes(buf, len), len));
	}
	PG_RETURN_BYTEA_P(typed_seal(tc, typed_parse(tc, NULL, buf), PG_GETARG_INT32(2)));
}

/*
 * Binary send: the stored bytes for the dump/restore roles, the base type's
 * binary form through the gate for everyone else (nothing, zero bytes, for
 * a masked or erased value), so binary COPY out and back in round-trips.
 */
PG_FUNCTION_INFO_V1(encrypted_typed_send);
Datum
encrypted_typed_send(PG_FUNCTION_ARGS)
{
	TypedCall  *tc = typed_call(fcinfo, TYPED_FROM_ARG0_TYPE);
	bytea	   *v = PG_GETARG_BYTEA_PP(0);
	StringInfoData buf;
	EncValue	ev;
	size_t		len = 0;
	TypedOutcome outcome;
	unsigned char *pt;

	if (ciphertext_io())
		PG_RETURN_BYTEA_P(send_common(v, ENVELOPE_BYTEA));	/* the stored bytes */
	pt = typed_open(tc, v, &ev, &len, &outcome);
	pq_begintypsend(&buf);
	if (pt != NULL)
	{
		pq_sendbytes(&buf, (char *) pt, len);
		free_plaintext(pt, len);
	}
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

/* Assignment to a column: reseal under the column's category key. */
PG_FUNCTION_INFO_V1(encrypted_typed_typmod);
Datum
encrypted_typed_typmod(PG_FUNCTION_ARGS)
{
	TypedCall  *tc = typed_call(fcinfo, TYPED_FROM_ARG0_TYPE);

	PG_RETURN_BYTEA_P(coerce_common(PG_GETARG_BYTEA_PP(0), PG_GETARG_INT32(1), tc->tb->kind));
}

/* A plain value goes in: the cast from the base type (or one that converts to it). */
PG_FUNCTION_INFO_V1(encrypted_typed_from_base);
Datum
encrypted_typed_from_base(PG_FUNCTION_ARGS)
{
	TypedCall  *tc = typed_call(fcinfo, TYPED_FROM_RESULT);
	Datum		d = PG_GETARG_DATUM(0);

	if (tc->arg_converts)
		d = FunctionCall1(&tc->arg_cast, d);
	PG_RETURN_BYTEA_P(typed_seal(tc, d, PG_GETARG_INT32(1)));
}

/*
 * Plaintext comes out by an explicit cast, through the gate.  A value the
 * session may not see (masked, privacy.on_denied = 'mask') or whose key was
 * destroyed is NULL: there is no date or number that means "hidden".
 */
PG_FUNCTION_INFO_V1(encrypted_typed_to_base);
Datum
encrypted_typed_to_base(PG_FUNCTION_ARGS)
{
	TypedCall  *tc = typed_call(fcinfo, TYPED_FROM_ARG0_TYPE);
	EncValue	ev;
	size_t		len;
	TypedOutcome outcome;
	unsigned char *pt = typed_open(tc, PG_GETARG_BYTEA_PP(0), &ev, &len, &outcome);
	Datum		d;

	if (outcome == TYPED_CIPHERTEXT)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot cast an encrypted value to %s without a purpose",
						format_type_be(tc->tb->base)),
				 errdetail("With no purpose declared, this role reads envelopes, not plaintext."),
				 errhint("Declare a purpose: SET privacy.purpose = '...'.")));
	if (pt == NULL)
		PG_RETURN_NULL();
	d = typed_datum(tc, pt, len);
	free_plaintext(pt, len);
	PG_RETURN_DATUM(d);
}

PG_FUNCTION_INFO_V1(encrypted_typed_reseal);
Datum
encrypted_typed_reseal(PG_FUNCTION_ARGS)
{
	TypedCall  *tc = typed_call(fcinfo, TYPED_FROM_ARG0_TYPE);

	PG_RETURN_BYTEA_P(reseal_common(PG_GETARG_BYTEA_PP(0), tc->tb->kind));
}

PG_FUNCTION_INFO_V1(encrypted_typed_seal_for_subject);
Datum
encrypted_typed_seal_for_subject(PG_FUNCTION_ARGS)
{
	TypedCall  *tc = typed_call(fcinfo, TYPED_FROM_ARG0_TYPE);
	uint32		subject_key = 0;
	unsigned char hash[PRIVACY_SUBJECT_HASH_BYTES];

	PG_RETURN_BYTEA_P(subject_seal_common(PG_GETARG_BYTEA_PP(0), PG_GETARG_TEXT_PP(1), &subject_key, hash,
										  tc->tb->kind, false));
}

/*
 * <, <=, > and >= on the typed encrypted types: ordering and ranges are
 * never answered without decrypting, so they say so rather than compare
 * search tags (whose order means nothing).  The btree operator class that
 * equality search needs uses operators of privacy_internal instead.
 */
PG_FUNCTION_INFO_V1(encrypted_no_order);
Datum
encrypted_no_order(PG_FUNCTION_ARGS)
{
	TypedCall  *tc = typed_call(fcinfo, TYPED_FROM_ARG0_TYPE);

	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("%s values cannot be ordered or compared by range", tc->enc_name),
			 errdetail("Ordering would need the plaintext; an encrypted column answers equality search only (if searchable)."),
			 errhint("Compare the plaintext, with a purpose allowed the column's category: col::%s < ... (each row is decrypted).",
					 format_type_be(tc->tb->base))));
	PG_RETURN_NULL();
}

/* The type modifier of encrypted_jsonb: a category, no equality search. */
PG_FUNCTION_INFO_V1(encrypted_typmod_in_unsearchable);
Datum
encrypted_typmod_in_unsearchable(PG_FUNCTION_ARGS)
{
	int32		typmod = DatumGetInt32(encrypted_typmod_in(fcinfo));

	if (TYPMOD_SEARCHABLE(typmod))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("equality search is not available for privacy.encrypted_jsonb"),
				 errdetail("Documents equal as jsonb may differ in their bytes (1.0 and 1), so a search tag would miss matches."),
				 errhint("Extract the field to search into a column of its own, e.g. privacy.encrypted_text(contact, searchable).")));
	PG_RETURN_INT32(typmod);
}

/* For SQL: is this one of the encrypted types? */
PG_FUNCTION_INFO_V1(privacy_is_encrypted_type);
Datum
privacy_is_encrypted_type(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(types_encrypted_kind(PG_GETARG_OID(0)) != 0);
}
