# SPDX-License-Identifier: MIT
# wiremesh — one non-recursive Makefile. Each folder adds its parts in module.mk.
#
#   make              build every binary into bin/
#   make test         install what is missing, build, run the whole suite
#   make test SANITIZE=address,undefined   the same under ASan+UBSan (own build dir)
#   make tsan-concurrency   the concurrency tests (server_race, server_concurrency,
#                     server_ha: three replicas) under ThreadSanitizer (build/tsan)
#   make fuzz         build the libFuzzer targets with clang
#   make demo         the one-command demo (network namespaces, needs root);
#                     OIDC=1 adds an interactive OpenID Connect login
#   make install      binaries, systemd units, configs, man pages (PREFIX=/usr/local, DESTDIR=)
#   V=1               show full commands

CC      ?= cc
PKGS    := libmicrohttpd gnutls sqlite3 jansson libsodium libcrypto libssl libcurl libpq libzstd
CSTD    := -std=c11 -D_GNU_SOURCE
WARN    := -Wall -Wextra -Wshadow -Wformat=2 -Wno-unused-parameter -Werror
OPT     ?= -O2 -g
SANITIZE ?=

ifeq ($(SANITIZE),)
BUILD   := build/release
BIN     := bin
else
# ThreadSanitizer cannot share objects with ASan: its own tree.
BUILD   := build/$(if $(filter thread,$(SANITIZE)),tsan,san)
BIN     := $(BUILD)/bin
OPT     := -O1 -g -fno-omit-frame-pointer -fsanitize=$(SANITIZE) -fno-sanitize-recover=all
LDSAN   := -fsanitize=$(SANITIZE)
endif

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) check 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null)

CFLAGS  += $(CSTD) $(WARN) $(OPT) -I. $(PKG_CFLAGS) -MMD -MP -pthread
LDFLAGS += $(LDSAN) -pthread
LDLIBS  += $(PKG_LIBS) -lm

ifeq ($(V),1)
Q :=
else
Q := @
endif

# Filled in by module.mk files.
LIBS      :=
BINARIES  :=
TEST_SRCS :=
FUZZERS   :=

all: binaries

include common/module.mk
-include $(sort $(filter-out common/module.mk tests/module.mk,$(wildcard */module.mk)))
include tests/module.mk

binaries: $(BINARIES)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

$(BIN)/%:
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $(filter %.o %.a,$^) $(LDLIBS)

%.a:
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && ar rcs $@ $^

# deps: what building and running need; test-deps: also what the tests and the demo start
deps:
	$(Q)scripts/install-deps.sh

test-deps:
	$(Q)scripts/install-deps.sh --test

# the one-command demo: namespaces, control server, relays, four agents (root)
# OIDC=1 then shows an interactive login (scripts/demo-oidc.sh)
demo: test-deps binaries
	$(Q)WM_BIN=$(abspath $(BIN)) scripts/demo.sh
	$(Q)$(if $(filter 1,$(OIDC)),WM_BIN=$(abspath $(BIN)) scripts/demo-oidc.sh)

clean:
	rm -rf build bin

.PHONY: all binaries deps test-deps clean test unit integration fuzz demo bench-control
.DELETE_ON_ERROR:

-include $(shell find build -name '*.d' 2>/dev/null)
