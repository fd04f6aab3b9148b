# dyn - build, test, install.  See README.md.
#
#   make               build ./dyn
#   make test          build and run every test; ends with "N passed, N failed"
#   make test SAN=1    the same under AddressSanitizer + UBSan (build/san/)
#   make bench         benchmarks (ratios against baselines measured in the same run)
#   make fuzz          fuzz targets for a bounded time (clang + libFuzzer)
#   make fuzz-build    only build them (build/fuzz/)
#   make deps          install build and test dependencies (Debian 12, apt-get)
#   make install PREFIX=/usr/local

CC      ?= cc
PREFIX  ?= /usr/local
SAN     ?= 0
VENV    := build/venv
AIPERF_VENV := build/aiperf
GGUF_VENV := build/gguf
LLAMACPP := build/llamacpp
LLAMACPP_PY_VERSION := 0.3.36
PYTHON  ?= $(VENV)/bin/python
FUZZ_SECONDS ?= 60
# test programs run at once (test/run.sh: those that must, run alone)
TEST_JOBS ?= 2

ifeq ($(SAN),1)
BUILD   := build/san
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
OPT     := -O1
DYN     := $(BUILD)/dyn
else
BUILD   := build/rel
SANFLAGS :=
OPT     := -O2
DYN     := dyn
endif

VERSION := 0.1.0
GIT_COMMIT := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)

CPPFLAGS += -I. -D_GNU_SOURCE -DDYN_VERSION='"$(VERSION)"' \
	    -DDYN_BUILD_FLAGS='"$(OPT)$(if $(SANFLAGS), asan+ubsan,)"'
CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=c17 -Wall -Wextra -Werror -pthread -MMD -MP $(SANFLAGS)
LDFLAGS += -pthread $(SANFLAGS)

# Static where Debian ships a static library; CUDA/NCCL/UCX are dlopen()ed.
STATIC_LIBS  := -lhwloc -levent_openssl -levent_pthreads -levent_core -lxxhash -lpcre2-8 -lutf8proc -lsqlite3
DYNAMIC_LIBS := -ludev -lcjson -lcurl -lssl -lcrypto -lm -ldl
LDLIBS  := -Wl,-Bstatic $(STATIC_LIBS) -Wl,-Bdynamic $(DYNAMIC_LIBS)

# Every .c under the component folders is part of the library; main.c and
# the tests link against it.  New files need no Makefile change.
# The CUDA backend (gpu/, below) joins them: its C needs no CUDA toolkit.
LIB_SRC  := $(sort $(wildcard core/*.c core/*/*.c store/*.c net/*.c cmd/*.c gpu/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)

.DEFAULT_GOAL := all

# CUDA: gpu/kernels.cu compiled by nvcc (on PATH or in /usr/local/cuda; NVCC=...
# names another, CUDA=0 leaves the kernels out) for CUDA_ARCHS into one
# fatbin that gpu/fatbin_blob.S embeds in dyn.  Nothing links against
# libcuda, libcudart or cuBLAS: gpu/cuda_api.c dlopen()s them, so the same
# binary runs with and without a GPU.  Without nvcc, dyn builds without the
# kernels and its cuda backend says so.
CUDA    ?= 1
NVCC    ?= $(firstword $(shell command -v nvcc 2>/dev/null) $(wildcard /usr/local/cuda/bin/nvcc))
CUDA_ARCHS := 80 90
CUDA_FATBIN := $(BUILD)/gpu/kernels.fatbin
ifeq ($(if $(filter 1,$(CUDA)),$(NVCC)),)
CUDA_CONFIG := none
$(info CUDA backend not included: $(if $(filter 1,$(CUDA)),no nvcc found,CUDA=$(CUDA)))
else
CUDA_CONFIG := $(CUDA_ARCHS:%=sm_%)
LIB_OBJ += $(BUILD)/gpu/fatbin_blob.o
$(BUILD)/gpu/fatbin.o: CPPFLAGS += -DDYN_CUDA_ARCHS='"$(CUDA_CONFIG)"'
endif
# fatbin.o says which kernels are in: rebuilt when that changes
CUDA_STAMP := $(BUILD)/gpu/cuda-config
$(shell mkdir -p $(BUILD)/gpu && [ "$$(cat $(CUDA_STAMP) 2>/dev/null)" = "$(CUDA_CONFIG)" ] || \
	echo "$(CUDA_CONFIG)" >$(CUDA_STAMP))
$(BUILD)/gpu/fatbin.o: $(CUDA_STAMP)
$(CUDA_FATBIN): gpu/kernels.cu
	@mkdir -p $(dir $@)
	$(NVCC) -O3 -fatbin $(foreach a,$(CUDA_ARCHS),-gencode arch=compute_$(a),code=sm_$(a)) \
		-gencode arch=compute_$(lastword $(CUDA_ARCHS)),code=compute_$(lastword $(CUDA_ARCHS)) \
		-o $@ $<
$(BUILD)/gpu/fatbin_blob.o: gpu/fatbin_blob.S $(CUDA_FATBIN)
	$(CC) -c -DDYN_FATBIN='"$(CUDA_FATBIN)"' -o $@ $<
UNIT_SRC := $(sort $(wildcard test/unit/*.c))
UNIT_BIN := $(UNIT_SRC:test/unit/%.c=$(BUILD)/test/%)
FUZZ_SRC := $(sort $(wildcard test/fuzz/*.c))
BENCH_SRC := $(sort $(wildcard test/bench/*.c))
BENCH_BIN := $(BENCH_SRC:test/bench/%.c=$(BUILD)/bench/%)
MAN_PAGES := $(sort $(wildcard man/*.[1-8]))
COMMANDS := $(shell grep -o '^[[:space:]]*CMD."[a-z]*"' main.c 2>/dev/null | cut -d'"' -f2)

.PHONY: all test test-build bench fuzz fuzz-build deps deps-run install uninstall clean run lint-man venv aiperf-venv

all: $(DYN)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/libdyn.a: $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(DYN): $(BUILD)/main.o $(BUILD)/libdyn.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/test/%: test/unit/%.c test/unit/check.h $(BUILD)/libdyn.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libdyn.a $(LDLIBS)

$(BUILD)/bench/%: test/bench/%.c $(BUILD)/libdyn.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libdyn.a $(LDLIBS)

# The commit id changes without any source change (a commit, a checkout,
# packed refs): main.o alone holds it (dyn_git_commit) and depends on a
# stamp file that is rewritten only when the id differs.
GIT_STAMP := $(BUILD)/git-commit
$(shell mkdir -p $(BUILD) && [ "$$(cat $(GIT_STAMP) 2>/dev/null)" = "$(GIT_COMMIT)" ] || \
	echo "$(GIT_COMMIT)" >$(GIT_STAMP))
$(BUILD)/main.o: $(GIT_STAMP)
$(BUILD)/main.o: CPPFLAGS += -DDYN_GIT_COMMIT='"$(GIT_COMMIT)"'

# Python test oracles (test/requirements.txt) in a venv built on Debian's
# python3 so that python3-sentencepiece is visible too.
venv: $(VENV)/.installed
$(VENV)/.installed: test/requirements.txt
	@rm -rf $(VENV)
	/usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r test/requirements.txt
	@touch $@

# test and run first make sure the Debian packages are there (quiet and
# quick when they are), so a fresh clone needs no other command.
test: deps
	@$(MAKE) --no-print-directory test-build
	@DYN_BIN=$(abspath $(DYN)) BUILD=$(BUILD) PYTHON=$(PYTHON) SAN=$(SAN) \
		TEST_JOBS=$(TEST_JOBS) bash test/run.sh
test-build: $(DYN) $(UNIT_BIN) $(VENV)/.installed

# BENCH=rpc,tok runs only those scripts, and fetches only what they need
# (AIPerf for bench_vs_aiperf, llama.cpp and gguf for engine).
comma := ,
BENCH_SEL := $(subst $(comma), ,$(BENCH))
bench_wants = $(if $(BENCH_SEL),$(filter $(1),$(BENCH_SEL)),$(1))
BENCH_DEPS := $(if $(call bench_wants,bench_vs_aiperf),$(AIPERF_VENV)/.installed) \
	      $(if $(call bench_wants,engine),$(GGUF_VENV)/.installed $(LLAMACPP)/.built)
bench: $(DYN) $(BENCH_BIN) $(BENCH_DEPS)
	@DYN_BIN=$(abspath $(DYN)) BUILD=$(BUILD) LLAMACPP=$(LLAMACPP) GGUF_PYTHON=$(GGUF_VENV)/bin/python \
		BENCH="$(BENCH)" sh test/bench/run.sh

# AIPerf (PyPI, pinned in test/bench/aiperf-requirements.txt) for the
# dyn bench vs AIPerf comparison in make bench: its own venv, since it
# pulls in heavy dependencies the tests do not need.
aiperf-venv: $(AIPERF_VENV)/.installed
$(AIPERF_VENV)/.installed: test/bench/aiperf-requirements.txt
	@rm -rf $(AIPERF_VENV)
	/usr/bin/python3 -m venv $(AIPERF_VENV)
	$(AIPERF_VENV)/bin/pip install -q --disable-pip-version-check -r test/bench/aiperf-requirements.txt
	@touch $@

# The llama.cpp baseline of the engine bench (test/bench/engine.sh): the
# llama-bench tool built from the vendored llama.cpp of the
# llama-cpp-python sdist (PyPI, pinned here), native CPU flags, once into
# build/llamacpp/; and the gguf package (test/bench/llamacpp-requirements.txt)
# in build/gguf to write GGUF files of the benchmarked shapes.  A failed
# build does not stop make bench: the reason goes to
# build/llamacpp/FAILED and engine.sh prints it instead of the baseline.
$(GGUF_VENV)/.installed: test/bench/llamacpp-requirements.txt
	@rm -rf $(GGUF_VENV)
	/usr/bin/python3 -m venv $(GGUF_VENV)
	$(GGUF_VENV)/bin/pip install -q --disable-pip-version-check -r test/bench/llamacpp-requirements.txt
	@touch $@
$(LLAMACPP)/.built:
	@mkdir -p $(LLAMACPP); rm -f $(LLAMACPP)/FAILED; cd $(LLAMACPP) && { \
	  echo "llama.cpp: building llama-bench from llama-cpp-python $(LLAMACPP_PY_VERSION) (log: $(LLAMACPP)/build.log)"; \
	  { [ -f llama_cpp_python-$(LLAMACPP_PY_VERSION).tar.gz ] || \
	    /usr/bin/python3 -m pip download -q --disable-pip-version-check --no-binary :all: --no-deps \
		llama-cpp-python==$(LLAMACPP_PY_VERSION) -d . ; } >build.log 2>&1 && \
	  rm -rf src && mkdir src && tar xzf llama_cpp_python-$(LLAMACPP_PY_VERSION).tar.gz -C src --strip-components=1 && \
	  cmake -S src/vendor/llama.cpp -B cmake -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
		-DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
		-DLLAMA_BUILD_SERVER=OFF -DLLAMA_OPENSSL=OFF >>build.log 2>&1 && \
	  cmake --build cmake --target llama-bench -j2 >>build.log 2>&1 && \
	  cp cmake/bin/llama-bench llama-bench && echo "from llama-cpp-python $(LLAMACPP_PY_VERSION)" >VERSION && touch .built; \
	} || { { echo "llama.cpp build failed (llama-cpp-python $(LLAMACPP_PY_VERSION)):"; \
		tail -5 build.log; } >FAILED; cat FAILED; }

# Fuzz targets: clang's libFuzzer with ASan and UBSan.  The library is
# compiled once into build/fuzz/libdyn.a (instrumented for coverage, no
# fuzzer main) and each target links against it; `make fuzz` then runs each
# for FUZZ_SECONDS, from its seeds (test/fuzz/NAME.seed) and its corpus.
FUZZ_DIR := build/fuzz
FUZZ_OBJ := $(filter-out cmd/%,$(LIB_SRC))
FUZZ_OBJ := $(FUZZ_OBJ:%.c=$(FUZZ_DIR)/obj/%.o)
FUZZ_BIN := $(FUZZ_SRC:test/fuzz/%.c=$(FUZZ_DIR)/%)
FUZZ_CFLAGS := -std=c17 -g -O1 -Wall -Wextra -Werror -pthread \
	-fsanitize=address,undefined -fno-sanitize-recover=undefined

$(FUZZ_DIR)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c -o $@ $<

$(FUZZ_DIR)/libdyn.a: $(FUZZ_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(FUZZ_DIR)/fuzz_%: test/fuzz/fuzz_%.c $(FUZZ_DIR)/libdyn.a
	clang $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer -MMD -MP -o $@ $< \
		$(FUZZ_DIR)/libdyn.a $(LDLIBS)

fuzz-build: $(FUZZ_BIN)

fuzz: fuzz-build
	@set -e; for name in $(notdir $(FUZZ_BIN)); do \
		echo "fuzz: $$name ($(FUZZ_SECONDS)s)"; \
		mkdir -p $(FUZZ_DIR)/$$name.corpus; \
		$(FUZZ_DIR)/$$name -max_total_time=$(FUZZ_SECONDS) -timeout=10 -artifact_prefix=$(FUZZ_DIR)/$$name- \
			$(FUZZ_DIR)/$$name.corpus $$( [ -d test/fuzz/$$name.seed ] && echo test/fuzz/$$name.seed ) \
			2>$(FUZZ_DIR)/$$name.log || { grep -m5 -e 'invariant' -e 'ERROR:' -e 'runtime error' $(FUZZ_DIR)/$$name.log || true; \
			tail -30 $(FUZZ_DIR)/$$name.log; exit 1; }; \
		tail -1 $(FUZZ_DIR)/$$name.log; \
	done

# Debian 12 packages for building and testing.  Quiet when all present.
# UCX (libucx0; ucx-utils for ucx_info and ucx_perftest) is optional at
# run time (dlopen()ed, no headers needed): the tests use it where it is.
# iproute2: the network namespaces of the cross-host test (disagg_netns).
# etcd-server, etcd-client: the etcd store backend's tests start their own.
# openssl: the TLS tests make their CA and certificates with it.
DEB_BUILD := gcc make pkg-config libevent-dev libcjson-dev libcurl4-openssl-dev libssl-dev \
	libsqlite3-dev libhwloc-dev libxxhash-dev libpcre2-dev libutf8proc-dev libudev-dev
DEB_TEST  := mandoc python3 python3-venv python3-sentencepiece clang libclang-rt-14-dev \
	procps psmisc prometheus curl libucx0 ucx-utils iproute2 etcd-server etcd-client openssl \
	slurmctld slurmd slurm-client munge
NPROC := $(shell nproc 2>/dev/null || echo 2)
deps: DEB_WANTED = $(DEB_BUILD) $(DEB_TEST)
deps-run: DEB_WANTED = $(DEB_BUILD) curl
deps deps-run:
	@missing=$$(for p in $(DEB_WANTED); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "deps: installing $$missing"; \
		SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		log=$$(mktemp); \
		{ $$SUDO apt-get update -qq && \
		  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
		} >$$log 2>&1 || { cat $$log; rm -f $$log; echo "deps: apt-get failed"; exit 1; }; \
		rm -f $$log; \
	fi

install: $(DYN)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5 \
		$(DESTDIR)$(PREFIX)/share/man/man7
	install -m 755 $(DYN) $(DESTDIR)$(PREFIX)/bin/dyn
	@for c in $(COMMANDS); do ln -sf dyn $(DESTDIR)$(PREFIX)/bin/dyn-$$c; done
	install -m 644 $(filter %.1,$(MAN_PAGES)) $(DESTDIR)$(PREFIX)/share/man/man1
	$(if $(filter %.5,$(MAN_PAGES)),install -m 644 $(filter %.5,$(MAN_PAGES)) $(DESTDIR)$(PREFIX)/share/man/man5)
	$(if $(filter %.7,$(MAN_PAGES)),install -m 644 $(filter %.7,$(MAN_PAGES)) $(DESTDIR)$(PREFIX)/share/man/man7)

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/dyn $(addprefix $(DESTDIR)$(PREFIX)/bin/dyn-,$(COMMANDS))
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/share/man/man1/,$(notdir $(filter %.1,$(MAN_PAGES))))
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/share/man/man5/,$(notdir $(filter %.5,$(MAN_PAGES))))
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/share/man/man7/,$(notdir $(filter %.7,$(MAN_PAGES))))

lint-man:
	mandoc -Tlint -Wwarning $(MAN_PAGES)

clean:
	rm -rf build dyn

-include $(shell find build -name '*.d' -type f 2>/dev/null)

# The main job: build, then start a frontend and one worker for MODEL (a
# hub id or a folder; default ../shared/models/stories260K) on the
# embedded file store, until Ctrl-C (scripts/run.sh).
# Only the build dependencies (and curl, which the script uses); a parallel
# build.  On a terminal the script runs as its own job (set -m) so that
# Ctrl-C reaches it and its children but not make, which would otherwise
# die of the signal and turn the script's exit status 0 into 130.
MODEL ?=
run: deps-run
	@$(MAKE) --no-print-directory -j$(NPROC) $(DYN)
	@sh -c 'if [ -t 0 ]; then set -m; fi; sh scripts/run.sh ./$(DYN) $(MODEL)'
