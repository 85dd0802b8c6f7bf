/*
 * privacy.h — what the parts of privacy.so expose to each other.
 *
 * One section per part of the design (see doc/internals.md): each .c file in
 * src/ implements one part, and _PG_init in privacy.c wires them together.
 */
#ifndef PRIVACY_H
#define PRIVACY_H

#include "compat.h"

#define PRIVACY_SCHEMA "privacy"

/* guc.c — settings, all privacy.* */
extern char *privacy_master_key_command;
extern char *privacy_purpose;
extern void guc_define(void);

/* keys.c — the master key, loaded once at postmaster start */
#define PRIVACY_MASTER_KEY_BYTES 32
extern void keys_load_master_key(void);
extern bool keys_master_key_available(void);
extern void keys_require_master_key(void);
extern void keys_derive(const char *context, uint64 subkey_id,
						unsigned char *out, size_t outlen);

/* consent.c — purposes: may this session use this category now? */
typedef enum PurposeVerdict
{
	PURPOSE_ALLOWED = 0,
	PURPOSE_NOT_DECLARED,
	PURPOSE_UNKNOWN,
	PURPOSE_NOT_HELD,
	PURPOSE_CATEGORY_NOT_ALLOWED
} PurposeVerdict;

extern void consent_init(void);
extern PurposeVerdict consent_purpose_verdict(const char *category);
extern void consent_require_purpose(const char *category);

#endif
