/*
 * asan_first.c — preloaded after the AddressSanitizer runtime into the
 * server of the sanitize suite (test/run sanitize, test/lib.sh).
 *
 * PostgreSQL is not instrumented, so the runtime is preloaded and starts
 * lazily, on the first malloc.  On Debian 12 that first malloc comes from a
 * library constructor (libgpg-error's, through libldap and gnutls) inside
 * bindtextdomain(), which holds glibc's gettext lock; the runtime's start
 * calls dlerror(), which takes the same lock, leaves it corrupted, and the
 * server hangs in its own bindtextdomain() at startup.  This library
 * interposes bindtextdomain: it makes the runtime start (one malloc) before
 * the lock is taken, then calls glibc's.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>

char	   *bindtextdomain(const char *domainname, const char *dirname);

char *
bindtextdomain(const char *domainname, const char *dirname)
{
	static char *(*real) (const char *, const char *) = NULL;

	if (real == NULL)
	{
		/* volatile: the compiler may drop a malloc that is freed at once */
		void	   *volatile start = malloc(1);

		free(start);
		real = (char *(*) (const char *, const char *)) dlsym(RTLD_NEXT, "bindtextdomain");
		if (real == NULL)
			return NULL;
	}
	return real(domainname, dirname);
}
