/*
 * typmod.h — the type modifier of the encrypted types.
 *
 * Plain C with no server headers, so that unit tests and fuzzers link it
 * alone.  privacy.encrypted_text(contact) or (contact, searchable), or the
 * numeric form typmod_out prints when no category has the id:
 *
 *   typmod := category [ "," "searchable" ]
 *   category := a name of 1 to 63 bytes of [a-z0-9_], not all digits
 *             | 1 to 65535 in decimal digits (no sign, no space)
 *
 * The value: category id in the low 16 bits, searchable in bit 16.  A name
 * is hashed (typmod_category_id), not looked up: pg_restore creates tables
 * before it loads the categories, and the modifier must mean the same
 * category before and after.
 */
#ifndef PRIVACY_TYPMOD_H
#define PRIVACY_TYPMOD_H

#include <stddef.h>
#include <stdint.h>

#define TYPMOD_CATEGORY(t) ((uint16_t) ((t) & 0xFFFF))
#define TYPMOD_SEARCHABLE(t) ((((uint32_t) (t)) >> 16) & 1)
#define MAKE_TYPMOD(cat, s) ((int32_t) ((cat) | ((s) ? (1 << 16) : 0)))
#define TYPMOD_NAME_MAX 63

typedef enum TypmodError
{
	TYPMOD_OK = 0,
	TYPMOD_BAD_COUNT,			/* not one or two items */
	TYPMOD_ID_OUT_OF_RANGE,		/* digits only, but not 1..65535 */
	TYPMOD_NAME_CHARACTER,		/* a byte outside [a-z0-9_] */
	TYPMOD_NAME_LENGTH,			/* empty, or longer than TYPMOD_NAME_MAX */
	TYPMOD_UNKNOWN_OPTION		/* the second item is not "searchable" */
} TypmodError;

/* A category's id: FNV-1a (32-bit) of its name, folded into 1..65535. */
extern uint16_t typmod_category_id(const char *name);

/*
 * Parse the items of a type modifier (NUL-terminated strings, as
 * PostgreSQL hands them to typmod_in).  On success *typmod is set; on a
 * failure it is left alone and the error says which rule failed (the item
 * concerned is items[0], or items[1] for TYPMOD_UNKNOWN_OPTION).
 */
extern TypmodError typmod_parse(const char *const *items, int nitems, int32_t *typmod);

#endif
