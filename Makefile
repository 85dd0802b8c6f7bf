# privacy — PGXS build.  The version lives only in privacy.control.

EXTENSION    = privacy
EXTVERSION   = $(shell sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" $(EXTENSION).control)
MODULE_big   = privacy
OBJS         = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
# The install script of this version is assembled from one file per part
# (sql/install/NN_part.sql, in name order); the scripts of released versions
# and the upgrade steps between them are checked in as they shipped.
INSTALL_PARTS = $(sort $(wildcard sql/install/*.sql))
DATA_built   = build/$(EXTENSION)--$(EXTVERSION).sql
DATA         = $(sort $(wildcard sql/$(EXTENSION)--*.sql))
# doc/*.md are read in the repository; they are not installed, because PGXS
# would put README.md and reference.md into the directory every extension
# shares.
SHLIB_LINK  += -lsodium
PG_CPPFLAGS += -Isrc -Wall -Wextra -Werror -Wno-unused-parameter \
               -Wno-missing-field-initializers -Wno-sign-compare

PG_CONFIG   ?= pg_config
PGXS        := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

build/$(EXTENSION)--$(EXTVERSION).sql: $(INSTALL_PARTS) $(EXTENSION).control
	@mkdir -p build
	{ printf -- '-- %s, assembled by the Makefile from sql/install/ (do not edit).\n' '$(notdir $@)'; \
	  for f in $(INSTALL_PARTS); do printf '\n-- ==== %s\n' "$$f"; cat "$$f"; done; } > $@

# PGXS does not track headers: every object depends on all of ours, so a
# changed struct never leaves a stale object behind.
$(OBJS) $(OBJS:.o=.bc): $(wildcard src/*.h)

# Plain-C parts (no postgres.h) are also built alone for unit tests and fuzzing.
UNIT_SRCS    = $(sort $(wildcard test/unit/test_*.c))
UNIT_BINS    = $(UNIT_SRCS:.c=)
PLAIN_SRCS   = src/hexkey.c src/envelope.c src/keycache.c src/storedform.c src/typmod.c src/logchain.c \
               src/redact_text.c src/label_text.c

test/unit/test_%: test/unit/test_%.c $(PLAIN_SRCS) test/unit/unit.h
	$(CC) -std=c99 -O2 -Wall -Wextra -Werror -Isrc -o $@ $< $(PLAIN_SRCS) -lsodium

# One libFuzzer target per parser that a client can feed (test/fuzz/README.md).
# Each replays its corpus test/fuzz/corpus/<name>/ against
# test/fuzz/<name>.expect with the ordinary compiler, as a unit test; the
# paths are compiled in because the test runner does not choose the working
# directory.
FUZZ_TARGETS = envelope storedform typmod label redact
FUZZ_REPLAYS = $(FUZZ_TARGETS:%=test/unit/test_fuzz_%)
FUZZ_BINS    = $(FUZZ_TARGETS:%=test/fuzz/fuzz_%)

test/unit/test_fuzz_%: test/fuzz/replay.c test/fuzz/fuzz_%.c test/fuzz/fuzz.h test/fuzz/%.expect $(PLAIN_SRCS)
	$(CC) -std=c99 -O2 -Wall -Wextra -Werror -Isrc -Itest/fuzz \
		-DCORPUS_DIR='"$(CURDIR)/test/fuzz/corpus/$*"' -DEXPECT_FILE='"$(CURDIR)/test/fuzz/$*.expect"' \
		-o $@ test/fuzz/replay.c test/fuzz/fuzz_$*.c $(PLAIN_SRCS) -lsodium

unit: $(UNIT_BINS) $(FUZZ_REPLAYS)

# libFuzzer builds, not part of the default build: see test/fuzz/README.md.
FUZZ_CC     ?= clang
test/fuzz/fuzz_%: test/fuzz/fuzz_%.c test/fuzz/fuzz.h $(PLAIN_SRCS)
	$(FUZZ_CC) -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
		-Wall -Wextra -Werror -Isrc -Itest/fuzz -o $@ $< $(PLAIN_SRCS) -lsodium

fuzz: $(FUZZ_BINS)

.PHONY: test demo bench unit fuzz
test:
	./test/run

demo:
	./test/demo

bench:
	./test/bench/run

EXTRA_CLEAN = build $(UNIT_BINS) $(FUZZ_REPLAYS) $(FUZZ_BINS) test/bench/sodium_floor results regression.diffs regression.out
