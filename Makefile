# goo-memory for C users: build, install and uninstall the C library, its headers, its
# pkg-config file and its CMake package.
#
#   make                                   build libgoo_memory.a and libgoo_memory.so (release)
#   make install PREFIX=/usr/local         install (DESTDIR=/staging for packagers); after
#                                          `make`, `sudo make install` needs no cargo
#   make uninstall PREFIX=/usr/local       remove what install put there
#   make test                              the README's test command: cargo test --workspace
#   make install-test                      install into a temporary prefix and build C programs
#                                          against it (pkg-config, pkg-config --static, CMake)
#
# Variables: PREFIX (/usr/local), DESTDIR (empty), LIBDIR and INCLUDEDIR (lib and include,
# relative to PREFIX: the installed pkg-config and CMake files find everything relative to
# their own location, so a staged or moved prefix keeps working), PROFILE (release; profiling
# installs libraries that keep line tables), STRIP_DEBUG (`strip --strip-debug` for release,
# `:` to keep debug info), CARGO, CARGO_TARGET_DIR, INSTALL.

PREFIX     ?= /usr/local
DESTDIR    ?=
LIBDIR     ?= lib
INCLUDEDIR ?= include
PROFILE    ?= release
CARGO      ?= cargo
STRIP      ?= strip
INSTALL    ?= install

ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
# Cargo resolves a relative CARGO_TARGET_DIR against the directory it runs in: ROOT here.
TARGET_DIR := $(if $(CARGO_TARGET_DIR),$(patsubst $(ROOT)//%,/%,$(ROOT)/$(CARGO_TARGET_DIR)),$(ROOT)/target)
# The installed libraries are built in a target directory of their own, target/make (see
# `build`): they are not the ones `cargo build` writes, and the two builds must not overwrite
# each other's files, which both name deps/libgoo_memory.{a,so}.
DIST_DIR   := $(TARGET_DIR)/make
BUILD_DIR  := $(DIST_DIR)/$(PROFILE)

ifneq ($(filter /%,$(LIBDIR) $(INCLUDEDIR)),)
$(error LIBDIR and INCLUDEDIR are relative to PREFIX (e.g. LIBDIR=lib64), not absolute paths)
endif

# The crate's version, and the SONAME's version by Cargo's compatibility rule: the major
# version from 1.0 on, 0.MINOR before (0.1.x and 0.2.x may differ in ABI). build.rs gives the
# shared library the same SONAME; `build` below checks that they agree.
# Without cargo (`sudo make install` after `make`: sudo's PATH seldom has ~/.cargo/bin),
# the version comes from the goo-memory.pc that the build wrote, and install uses that build.
HAVE_CARGO := $(shell command -v '$(CARGO)' >/dev/null 2>&1 && echo yes)
ifeq ($(HAVE_CARGO),yes)
VERSION := $(shell cd '$(ROOT)' && '$(CARGO)' pkgid -p goo-memory-capi 2>/dev/null | sed 's/.*[#@]//')
else
VERSION := $(shell sed -n 's/^Version: *//p' '$(BUILD_DIR)/goo-memory.pc' 2>/dev/null)
endif
ifeq ($(VERSION),)
$(error could not read goo-memory-capi's version: no '$(CARGO)' on PATH and no build in $(BUILD_DIR) (run make first))
endif
VERSION_MAJOR := $(word 1,$(subst ., ,$(VERSION)))
VERSION_MINOR := $(word 2,$(subst ., ,$(VERSION)))
SOVERSION     := $(if $(filter 0,$(VERSION_MAJOR)),0.$(VERSION_MINOR),$(VERSION_MAJOR))
SO_LINK       := libgoo_memory.so
SO_NAME       := libgoo_memory.so.$(SOVERSION)
SO_REAL       := libgoo_memory.so.$(VERSION)

# Shipped libraries carry no debug info unless asked for: the release profile has none of its
# own, and this also strips what the precompiled standard library brings into the archive.
# PROFILE=profiling (or STRIP_DEBUG=:) keeps it.
ifeq ($(PROFILE),release)
STRIP_DEBUG ?= $(STRIP) --strip-debug
else
STRIP_DEBUG ?= :
endif

DEST        = $(DESTDIR)$(PREFIX)
HEADERS    := $(patsubst $(ROOT)/include/%,%,$(shell find '$(ROOT)/include' -name '*.h' | sort))
HEADER_DIRS = $(sort $(patsubst %/,%,$(filter-out ./,$(dir $(HEADERS)))))
# From lib/pkgconfig (or lib/cmake/goo-memory) back up to the prefix: one .. per component.
UP_LIBDIR  := $(shell echo '$(LIBDIR)' | sed 's|[^/][^/]*|..|g')
CMAKE_DIR   = $(LIBDIR)/cmake/goo-memory

.PHONY: all build install uninstall test install-test clean

all: build

# `cargo rustc --crate-type staticlib,cdylib` rather than `cargo build`: the crate also
# declares an rlib (the Rust tests and benchmarks use it), and cargo applies the profile's
# `lto` to no crate type of a library that emits an rlib. Without the rlib the libraries get
# the release profile's fat LTO, which also leaves out the parts of the standard library
# they do not use (libgoo_memory.a: 28 MB from `cargo build --release`, 9.5 MB from this,
# 4.6 MB installed without the standard library's debug info).
build:
ifeq ($(HAVE_CARGO),yes)
	cd '$(ROOT)' && CARGO_TARGET_DIR='$(DIST_DIR)' \
	  '$(CARGO)' rustc --profile '$(PROFILE)' -p goo-memory-capi --lib --crate-type staticlib,cdylib
else
	@echo "no $(CARGO) on PATH: using the libraries already built in $(BUILD_DIR)"
	@test -f '$(BUILD_DIR)/libgoo_memory.a' && test -f '$(BUILD_DIR)/$(SO_LINK)'
endif
	@soname=$$(readelf -d '$(BUILD_DIR)/$(SO_LINK)' | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p'); \
	if [ "$$soname" != '$(SO_NAME)' ]; then \
	  echo "$(BUILD_DIR)/$(SO_LINK) has SONAME '$$soname', the Makefile expects '$(SO_NAME)'" >&2; exit 1; \
	fi

install: build
	$(INSTALL) -d '$(DEST)/$(INCLUDEDIR)' $(foreach d,$(HEADER_DIRS),'$(DEST)/$(INCLUDEDIR)/$(d)') \
	  '$(DEST)/$(LIBDIR)/pkgconfig' '$(DEST)/$(CMAKE_DIR)'
	@for h in $(HEADERS); do \
	  echo "$(INSTALL) -m 644 include/$$h $(DEST)/$(INCLUDEDIR)/$$h"; \
	  $(INSTALL) -m 644 "$(ROOT)/include/$$h" "$(DEST)/$(INCLUDEDIR)/$$h" || exit 1; \
	done
	$(INSTALL) -m 644 '$(BUILD_DIR)/libgoo_memory.a' '$(DEST)/$(LIBDIR)/libgoo_memory.a'
	$(INSTALL) -m 755 '$(BUILD_DIR)/$(SO_LINK)' '$(DEST)/$(LIBDIR)/$(SO_REAL)'
	$(STRIP_DEBUG) '$(DEST)/$(LIBDIR)/libgoo_memory.a' '$(DEST)/$(LIBDIR)/$(SO_REAL)'
	ln -sf '$(SO_REAL)' '$(DEST)/$(LIBDIR)/$(SO_NAME)'
	ln -sf '$(SO_NAME)' '$(DEST)/$(LIBDIR)/$(SO_LINK)'
	@# Libs.private has one source: build.rs (it wrote the build tree's goo-memory.pc).
	@libs_private=$$(sed -n 's/^Libs.private: *//p' '$(BUILD_DIR)/goo-memory.pc'); \
	ptr=$$(readelf -h '$(BUILD_DIR)/$(SO_LINK)' | grep -q 'ELF64' && echo 8 || echo 4); \
	for f in goo-memory.pc:$(LIBDIR)/pkgconfig goo-memory-config.cmake:$(CMAKE_DIR) \
	         goo-memory-config-version.cmake:$(CMAKE_DIR); do \
	  echo "writing $(DEST)/$${f#*:}/$${f%%:*}"; \
	  sed -e 's|@VERSION@|$(VERSION)|g' -e 's|@VERSION_MAJOR@|$(VERSION_MAJOR)|g' \
	      -e 's|@VERSION_MINOR@|$(VERSION_MINOR)|g' -e 's|@SOVERSION@|$(SOVERSION)|g' \
	      -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' \
	      -e 's|@UP_LIBDIR@|$(UP_LIBDIR)|g' -e "s|@LIBS_PRIVATE@|$$libs_private|g" \
	      -e "s|@SIZEOF_VOID_P@|$$ptr|g" \
	      "$(ROOT)/packaging/$${f%%:*}.in" > "$(DEST)/$${f#*:}/$${f%%:*}" || exit 1; \
	  chmod 644 "$(DEST)/$${f#*:}/$${f%%:*}"; \
	done
	@# A real install (no DESTDIR) by root refreshes the loader's cache, which /usr/local/lib
	@# needs; staged installs leave that to the package's own scripts.
	@if [ -z '$(DESTDIR)' ] && [ "$$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then \
	  echo ldconfig; ldconfig; fi

uninstall:
	rm -f $(foreach h,$(HEADERS),'$(DEST)/$(INCLUDEDIR)/$(h)') \
	  '$(DEST)/$(LIBDIR)/libgoo_memory.a' '$(DEST)/$(LIBDIR)/$(SO_LINK)' \
	  '$(DEST)/$(LIBDIR)/$(SO_NAME)' '$(DEST)/$(LIBDIR)/$(SO_REAL)' \
	  '$(DEST)/$(LIBDIR)/pkgconfig/goo-memory.pc' \
	  '$(DEST)/$(CMAKE_DIR)/goo-memory-config.cmake' '$(DEST)/$(CMAKE_DIR)/goo-memory-config-version.cmake'
	@# Only the directories that hold goo-memory's files alone, and only when empty: the
	@# header directories and their parents below INCLUDEDIR, children first (a parent sorts
	@# before its children), and lib/cmake/goo-memory. INCLUDEDIR and LIBDIR themselves stay.
	@for d in $(HEADER_DIRS); do while [ "$$d" != . ]; do echo "$$d"; d=$$(dirname "$$d"); done; done \
	  | sort -ru | while read -r d; do rmdir "$(DEST)/$(INCLUDEDIR)/$$d" 2>/dev/null || true; done
	@rmdir '$(DEST)/$(CMAKE_DIR)' 2>/dev/null || true
	@if [ -z '$(DESTDIR)' ] && [ "$$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then \
	  echo ldconfig; ldconfig; fi

test:
	cd '$(ROOT)' && '$(CARGO)' test --workspace

install-test:
	'$(ROOT)/scripts/test-install.sh'

clean:
	cd '$(ROOT)' && '$(CARGO)' clean
