/*
 * label_text.h — the grammar of a privacy security label.
 *
 * Plain C with no server headers, so that unit tests and fuzzers link it
 * alone; label.c checks the object, the privileges and the category, and
 * applies the label.  Whitespace is allowed around every item, key, "="
 * and value:
 *
 *   label  := item ( "," item )*
 *   item   := key "=" value | flag
 *   column: category=<category name> [, searchable] [, encrypt]
 *   table:  subject=<column name>
 *
 * Keys and flags are case-insensitive; each may appear once.  A value is
 * taken exactly as written (no case folding, trailing whitespace dropped),
 * or between double quotes, with "" for a quote, for a column name holding
 * commas or spaces.  A category name starts with a lower-case letter and has
 * at most 63 lower-case letters, digits and underscores; a column name has
 * 1 to 63 bytes.
 */
#ifndef PRIVACY_LABEL_TEXT_H
#define PRIVACY_LABEL_TEXT_H

#include <stddef.h>

#define LABEL_TEXT_NAME_MAX 63

/* What a label declares; the names point into the caller's buffer. */
typedef struct LabelText
{
	const char *category;		/* column: category=<name>, else NULL */
	int			searchable;		/* column: searchable */
	int			encrypt;		/* column: encrypt */
	const char *subject;		/* table: subject=<column>, else NULL */
} LabelText;

/*
 * Why a label was refused: reason is a static sentence, a printf format
 * with at most one "%.*s", which stands for the item_len bytes at item
 * (a key as written in the label, or a value as read).
 */
typedef struct LabelTextError
{
	const char *reason;
	const char *item;
	int			item_len;
} LabelTextError;

/*
 * Parse a NUL-terminated label for a column (is_column) or a table.  buf
 * must hold strlen(label) + 1 bytes (buflen): the values are copied there,
 * unquoted and NUL-terminated.  Returns 0 with *out set, or -1 with *err
 * set and *out left as it was (buf may hold scratch bytes).
 */
extern int	label_text_parse(const char *label, int is_column, char *buf, size_t buflen,
							 LabelText *out, LabelTextError *err);

#endif
