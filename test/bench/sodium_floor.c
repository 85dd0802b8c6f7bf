/*
 * sodium_floor.c — what libsodium alone costs per e-mail-sized value.
 *
 * The encrypted types can never be faster than the AEAD call underneath
 * them, so this is the floor every later benchmark is divided by.  It seals
 * and opens N distinct 24-byte values ("user00000123@example.org") with
 * XChaCha20-Poly1305-IETF the way our envelope does: a fresh random 24-byte
 * nonce per seal (randombytes_buf is inside the seal figure) and 7 bytes of
 * associated data, so 31 bytes of header plus the 16-byte tag per value.
 * For comparison it runs the same loop with AES-256-GCM (when the CPU has
 * AES-NI and CLMUL, else ChaCha20-Poly1305-IETF) with its 12-byte nonce, a
 * plain memcpy of the same plaintext bytes, and randombytes_buf alone for a
 * 24-byte nonce (libsodium's default "sysrandom" implementation makes one
 * getrandom() system call per call, a large share of the seal).
 *
 * Each operation runs once to warm up, then REPS times; the figures are the
 * best and the median of those runs, in nanoseconds per value.  Output is
 * one line per operation, "<op> <best_ns> <median_ns>", plus
 * "values <n> <bytes>", "baseline <name>", "randombytes <implementation>"
 * and "libsodium <version>"; test/bench/01_sodium_floor.sh turns it into
 * figure lines.
 *
 * usage: sodium_floor [values]        (default 1000000)
 */
#define _POSIX_C_SOURCE 200809L

#include <sodium.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define VALUE_LEN	24			/* "user%08u@example.org" */
#define AD_LEN		7			/* version, key id, category: authenticated */
#define REPS		5
#define XNONCE_LEN	crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_LEN		crypto_aead_xchacha20poly1305_ietf_ABYTES
#define NONCE_MAX	XNONCE_LEN
/* one stored value: the 7 header bytes (the AD), nonce, ciphertext, tag */
#define SLOT_LEN	(AD_LEN + NONCE_MAX + VALUE_LEN + TAG_LEN)

typedef enum
{
	ALG_XCHACHA,
	ALG_AESGCM,
	ALG_CHACHA_IETF
} Alg;

static size_t nvalues;
static unsigned char *plain;	/* nvalues * VALUE_LEN */
static unsigned char *sealed;	/* nvalues * SLOT_LEN */
static unsigned char *opened;	/* nvalues * VALUE_LEN */
static unsigned char key[32];
static crypto_aead_aes256gcm_state aes_state;
static const unsigned char ad[AD_LEN] = {1, 0, 0, 0, 42, 0, 7};

static double
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec * 1e9 + (double) ts.tv_nsec;
}

static size_t
nonce_len(Alg alg)
{
	switch (alg)
	{
		case ALG_XCHACHA:
			return crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
		case ALG_AESGCM:
			return crypto_aead_aes256gcm_NPUBBYTES;
		case ALG_CHACHA_IETF:
			return crypto_aead_chacha20poly1305_ietf_NPUBBYTES;
	}
	return 0;
}

static void
seal_all(Alg alg)
{
	size_t		nlen = nonce_len(alg);
	size_t		i;

	for (i = 0; i < nvalues; i++)
	{
		unsigned char *slot = sealed + i * SLOT_LEN;
		unsigned char *nonce = slot + AD_LEN;
		unsigned char *ct = nonce + nlen;
		unsigned long long clen;
		int			rc = -1;

		memcpy(slot, ad, AD_LEN);
		randombytes_buf(nonce, nlen);
		switch (alg)
		{
			case ALG_XCHACHA:
				rc = crypto_aead_xchacha20poly1305_ietf_encrypt(ct, &clen,
																plain + i * VALUE_LEN, VALUE_LEN,
																slot, AD_LEN, NULL, nonce, key);
				break;
			case ALG_AESGCM:
				rc = crypto_aead_aes256gcm_encrypt_afternm(ct, &clen,
														   plain + i * VALUE_LEN, VALUE_LEN,
														   slot, AD_LEN, NULL, nonce, &aes_state);
				break;
			case ALG_CHACHA_IETF:
				rc = crypto_aead_chacha20poly1305_ietf_encrypt(ct, &clen,
															   plain + i * VALUE_LEN, VALUE_LEN,
															   slot, AD_LEN, NULL, nonce, key);
				break;
		}
		if (rc != 0 || clen != VALUE_LEN + TAG_LEN)
		{
			fprintf(stderr, "sodium_floor: seal failed at value %zu\n", i);
			exit(1);
		}
	}
}

static void
open_all(Alg alg)
{
	size_t		nlen = nonce_len(alg);
	size_t		i;

	for (i = 0; i < nvalues; i++)
	{
		unsigned char *slot = sealed + i * SLOT_LEN;
		unsigned char *nonce = slot + AD_LEN;
		unsigned char *ct = nonce + nlen;
		unsigned long long mlen;
		int			rc = -1;

		switch (alg)
		{
			case ALG_XCHACHA:
				rc = crypto_aead_xchacha20poly1305_ietf_decrypt(opened + i * VALUE_LEN, &mlen, NULL,
																ct, VALUE_LEN + TAG_LEN,
																slot, AD_LEN, nonce, key);
				break;
			case ALG_AESGCM:
				rc = crypto_aead_aes256gcm_decrypt_afternm(opened + i * VALUE_LEN, &mlen, NULL,
														   ct, VALUE_LEN + TAG_LEN,
														   slot, AD_LEN, nonce, &aes_state);
				break;
			case ALG_CHACHA_IETF:
				rc = crypto_aead_chacha20poly1305_ietf_decrypt(opened + i * VALUE_LEN, &mlen, NULL,
															   ct, VALUE_LEN + TAG_LEN,
															   slot, AD_LEN, nonce, key);
				break;
		}
		if (rc != 0 || mlen != VALUE_LEN)
		{
			fprintf(stderr, "sodium_floor: open failed at value %zu\n", i);
			exit(1);
		}
	}
}

static void
check_opened(const char *what)
{
	if (memcmp(plain, opened, nvalues * VALUE_LEN) != 0)
	{
		fprintf(stderr, "sodium_floor: %s did not give back the plaintext\n", what);
		exit(1);
	}
	memset(opened, 0, nvalues * VALUE_LEN);
}

static void
nonce_all(void)
{
	size_t		i;

	for (i = 0; i < nvalues; i++)
		randombytes_buf(sealed + i * SLOT_LEN + AD_LEN, XNONCE_LEN);
}

static void
memcpy_all(void)
{
	size_t		i;

	for (i = 0; i < nvalues; i++)
	{
		memcpy(opened + i * VALUE_LEN, plain + i * VALUE_LEN, VALUE_LEN);
		/* keep the compiler from merging the copies into one */
		__asm__ __volatile__("" ::: "memory");
	}
}

typedef struct
{
	const char *name;
	void		(*run) (Alg);
	Alg			alg;
	double		ns[REPS];
} Op;

static void
run_memcpy(Alg alg)
{
	(void) alg;
	memcpy_all();
}

static void
run_nonce(Alg alg)
{
	(void) alg;
	nonce_all();
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return (x > y) - (x < y);
}

int
main(int argc, char **argv)
{
	Alg			base;
	const char *base_name;
	Op			ops[6];
	int			nops = 0;
	int			rep;
	int			o;
	size_t		i;

	nvalues = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
	if (nvalues == 0)
	{
		fprintf(stderr, "usage: sodium_floor [values]\n");
		return 2;
	}
	if (sodium_init() < 0)
	{
		fprintf(stderr, "sodium_floor: sodium_init failed\n");
		return 1;
	}
	plain = malloc(nvalues * VALUE_LEN + 1);
	sealed = malloc(nvalues * SLOT_LEN);
	opened = malloc(nvalues * VALUE_LEN);
	if (!plain || !sealed || !opened)
	{
		fprintf(stderr, "sodium_floor: out of memory\n");
		return 1;
	}
	for (i = 0; i < nvalues; i++)
	{
		/* snprintf writes a NUL after the 24 bytes: the next value overwrites it */
		snprintf((char *) plain + i * VALUE_LEN, VALUE_LEN + 1,
				 "user%08zu@example.org", i % 100000000);
	}
	randombytes_buf(key, sizeof(key));

	if (crypto_aead_aes256gcm_is_available())
	{
		base = ALG_AESGCM;
		base_name = "aes256gcm";
		crypto_aead_aes256gcm_beforenm(&aes_state, key);
	}
	else
	{
		base = ALG_CHACHA_IETF;
		base_name = "chacha20poly1305_ietf";
	}

	/* Each open follows the seal of the same algorithm: it opens what was sealed. */
	ops[nops++] = (Op) {"xchacha20poly1305_seal", seal_all, ALG_XCHACHA, {0}};
	ops[nops++] = (Op) {"xchacha20poly1305_open", open_all, ALG_XCHACHA, {0}};
	ops[nops++] = (Op) {"baseline_seal", seal_all, base, {0}};
	ops[nops++] = (Op) {"baseline_open", open_all, base, {0}};
	ops[nops++] = (Op) {"memcpy", run_memcpy, base, {0}};
	ops[nops++] = (Op) {"randombytes_nonce", run_nonce, base, {0}};

	/* rep -1 warms up caches, page tables and the CPU clock */
	for (rep = -1; rep < REPS; rep++)
	{
		for (o = 0; o < nops; o++)
		{
			double		t0 = now_ns();

			ops[o].run(ops[o].alg);
			if (rep >= 0)
				ops[o].ns[rep] = (now_ns() - t0) / (double) nvalues;
			if (ops[o].run == open_all || ops[o].run == run_memcpy)
				check_opened(ops[o].name);
		}
	}

	printf("values %zu %d\n", nvalues, VALUE_LEN);
	printf("baseline %s\n", base_name);
	printf("randombytes %s\n", randombytes_implementation_name());
	printf("libsodium %s\n", sodium_version_string());
	for (o = 0; o < nops; o++)
	{
		qsort(ops[o].ns, REPS, sizeof(double), cmp_double);
		printf("%s %.1f %.1f\n", ops[o].name, ops[o].ns[0], ops[o].ns[REPS / 2]);
	}
	free(plain);
	free(sealed);
	free(opened);
	return 0;
}
