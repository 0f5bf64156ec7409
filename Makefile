# qeval - build, test, demo.  `make demo` and `make check` are the quick start.
#
# Layout of outputs: $(BUILD)/ holds objects, the static library and the test
# runner; $(BINDIR)/qeval is the CLI. The sanitizer build uses its own
# BUILD/BINDIR so both can coexist.

BUILD   ?= build
BINDIR  ?= bin
CC      ?= cc
QEVAL_DATA ?= $(abspath ../shared/data)
export QEVAL_DATA

OPT     ?= -O2
QE_COMMIT := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
CFLAGS_BASE := -DQE_VERSION='"0.1.0"' -DQE_COMMIT='"$(QE_COMMIT)"' -std=c11 -Wall -Wextra -Werror -g $(OPT) -D_POSIX_C_SOURCE=200809L \
               -Ilib -I$(BUILD) -MMD -MP
SANFLAGS :=
ifeq ($(SAN),1)
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
endif
CFLAGS  += $(CFLAGS_BASE) $(SANFLAGS)
LDFLAGS += $(SANFLAGS)
LDLIBS  := -lOpenCL -lsqlite3 -lcsv -linih -ljansson -lz -lpthread -lm
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null || echo -lcheck -lsubunit -lrt -lm)

LIB_SRC  := $(sort $(wildcard lib/*.c lib/*/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o) $(BUILD)/kernels_embed.o $(BUILD)/schemas_embed.o
CMD_SRC  := $(sort $(wildcard cmd/*.c))
CMD_OBJ  := $(CMD_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(sort $(wildcard tests/*.c))
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)
SUITES   := $(patsubst tests/check_%.c,%,$(wildcard tests/check_*.c))
KERNELS  := $(sort $(wildcard kernels/*.cl))
SCHEMAS  := $(sort $(wildcard schemas/*.sql))

LIB  := $(BUILD)/libqeval.a
BIN  := $(BINDIR)/qeval
TESTBIN := $(BUILD)/run_tests

.PHONY: all deps check test e2e asan fuzz demo clean models
all: $(BIN)

deps:
	@sh tools/deps.sh

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# Kernels are embedded into the binary; the generator is a host tool built
# without sanitizers.
$(BUILD)/embed: tools/embed.c
	@mkdir -p $(BUILD)
	$(CC) -std=c11 -O1 -o $@ $<
$(BUILD)/kernels_embed.c: $(BUILD)/embed $(KERNELS)
	$(BUILD)/embed $@ $(KERNELS)
$(BUILD)/kernels_embed.o: $(BUILD)/kernels_embed.c
	$(CC) $(CFLAGS) -c $< -o $@
# SQL migrations (schemas/NNN_*.sql, applied in name order) likewise.
$(BUILD)/schemas_embed.c: $(BUILD)/embed $(SCHEMAS)
	$(BUILD)/embed --name schema $@ $(SCHEMAS)
$(BUILD)/schemas_embed.o: $(BUILD)/schemas_embed.c
	$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(CMD_OBJ) $(LIB)
	@mkdir -p $(BINDIR)
	$(CC) $(LDFLAGS) -o $@ $(CMD_OBJ) $(LIB) $(LDLIBS)

# The test runner calls <module>_suite() for every tests/check_<module>.c.
$(BUILD)/suites.inc: $(wildcard tests/check_*.c)
	@mkdir -p $(BUILD)
	@printf '$(foreach s,$(SUITES),QE_SUITE($(s))\n)' > $@.tmp && mv $@.tmp $@
$(BUILD)/tests/runner.o: $(BUILD)/suites.inc
$(TESTBIN): $(TEST_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $(TEST_OBJ) $(LIB) $(CHECK_LIBS) $(LDLIBS)

# Unit suites (TAP on stdout), then end-to-end tests of the CLI.
test: $(TESTBIN) $(BIN)
	QEVAL_BUILD=$(BUILD) $(TESTBIN)
	QEVAL=$(BIN) QEVAL_BUILD=$(BUILD) bash tests/e2e.sh
	bash tests/kernels_nvptx.sh > $(BUILD)/kernels_nvptx.log || { tail -30 $(BUILD)/kernels_nvptx.log; exit 1; }
	@tail -1 $(BUILD)/kernels_nvptx.log

check: deps
	$(MAKE) test

# Same tests under AddressSanitizer + UndefinedBehaviorSanitizer. Leak checks
# stay on for every suite that does not touch OpenCL; tests/lsan.supp silences
# leaks inside the ICD loader and PoCL. Processes that run PoCL get
# detect_leaks=0: LeakSanitizer's stop-the-world tracer crashes (SIGSEGV in
# the tracer, "LeakSanitizer has encountered a fatal error") at exit while
# PoCL's worker threads are alive, which made those runs flaky.
CL_SUITES := cl engine eval engine_formats eval_paired decode generate bench engine_arch jobgen mma
ASAN_ENV := UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
            LSAN_OPTIONS=suppressions=$(abspath tests/lsan.supp):print_suppressions=0
asan: deps
	$(MAKE) BUILD=build-asan BINDIR=build-asan/bin SAN=1 OPT=-O1 build-asan/run_tests build-asan/bin/qeval
	$(ASAN_ENV) ASAN_OPTIONS=detect_leaks=1 build-asan/run_tests $(foreach s,$(CL_SUITES),-x $(s))
	$(ASAN_ENV) ASAN_OPTIONS=detect_leaks=0 build-asan/run_tests $(CL_SUITES)
	$(ASAN_ENV) ASAN_OPTIONS=detect_leaks=0 QEVAL=build-asan/bin/qeval QEVAL_BUILD=build-asan bash tests/e2e.sh

# libFuzzer harnesses (clang), one per reader of hostile bytes: GGUF files,
# safetensors files, text through the tokenizers (which read the shared
# data's models: QEVAL_DATA), tokenizer.json files, a model's
# hyper-parameters and tensor shapes (edits of stories260K.gguf, and
# config.json files), dataset files (JSONL, CSV, ids), job files (seeded
# with jobs/) and the databases qeval merge reads (edits of a real one,
# build-fuzz/merge-seed.db, which qeval itself writes first from
# fuzz/merge-seed*.ini on the default device). FUZZ_SECONDS bounds each run;
# any sanitizer report stops it (-fno-sanitize-recover).
FUZZ_SECONDS ?= 60
FUZZ_CC = clang -std=c11 -g -O1 -D_POSIX_C_SOURCE=200809L -Ilib \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_TOK = lib/tokenizer.c lib/tok_*.c lib/unicode.c lib/unicode_data.c lib/gguf.c lib/dtype.c \
	lib/status.c
FUZZ_STORE = lib/store.c lib/store_chunk.c lib/store_gen.c lib/store_merge.c lib/report.c \
	lib/hash.c lib/status.c lib/dtype.c lib/log.c $(BUILD)/schemas_embed.c
# A results database with every kind of row: perplexity runs with KLD, one
# with stored logits, generations, bench rows with kernel times.
build-fuzz/merge-seed.db: $(BIN) fuzz/merge-seed.ini fuzz/merge-seed-gen.ini
	@mkdir -p build-fuzz
	rm -f $@ $@.tmp
	sed 's/^store_logits = 0/store_logits = 4/; s/^weights = q8_0/weights = q4_0/' \
	    fuzz/merge-seed.ini > build-fuzz/merge-seed-logits.ini
	$(BIN) run -q fuzz/merge-seed.ini --db $@.tmp
	$(BIN) run -q build-fuzz/merge-seed-logits.ini --db $@.tmp
	$(BIN) run -q fuzz/merge-seed-gen.ini --db $@.tmp
	$(BIN) bench -m $(QEVAL_DATA)/models/stories260K.gguf -p 16 -n 4 -r 1 --profile \
	    --db $@.tmp > /dev/null
	mv $@.tmp $@
fuzz: deps build-fuzz/merge-seed.db
	@mkdir -p build-fuzz/corpus-gguf build-fuzz/corpus-st build-fuzz/corpus-text build-fuzz/corpus-data \
	    build-fuzz/corpus-job build-fuzz/corpus-tokjson build-fuzz/corpus-model build-fuzz/corpus-merge
	$(FUZZ_CC) -o build-fuzz/fuzz_gguf fuzz/fuzz_gguf.c lib/gguf.c lib/dtype.c lib/status.c
	$(FUZZ_CC) -o build-fuzz/fuzz_safetensors fuzz/fuzz_safetensors.c lib/safetensors.c \
	    lib/status.c -ljansson
	$(FUZZ_CC) -o build-fuzz/fuzz_tokenize fuzz/fuzz_tokenize.c $(FUZZ_TOK) -ljansson
	$(FUZZ_CC) -o build-fuzz/fuzz_tokjson fuzz/fuzz_tokjson.c $(FUZZ_TOK) -ljansson
	$(FUZZ_CC) -o build-fuzz/fuzz_dataset fuzz/fuzz_dataset.c lib/dataset.c lib/hash.c \
	    lib/pool.c lib/status.c lib/log.c -ljansson -lcsv -lpthread
	$(FUZZ_CC) -o build-fuzz/fuzz_model fuzz/fuzz_model.c lib/model.c lib/ref.c lib/tensor.c \
	    lib/quant.c lib/safetensors.c lib/log.c lib/kv_format.c lib/turboquant.c lib/hash.c \
	    lib/gguf.c lib/dtype.c lib/status.c -ljansson -lm
	$(FUZZ_CC) -o build-fuzz/fuzz_job fuzz/fuzz_job.c lib/job.c lib/dataset.c lib/hash.c \
	    lib/kv_format.c lib/quant.c lib/pool.c lib/quant_model.c lib/turboquant.c lib/gguf_write.c \
	    lib/model.c lib/tensor.c lib/safetensors.c lib/log.c $(FUZZ_TOK) \
	    -linih -ljansson -lcsv -lm -lpthread
	$(FUZZ_CC) -I$(BUILD) -o build-fuzz/fuzz_merge fuzz/fuzz_merge.c $(FUZZ_STORE) \
	    -lsqlite3 -lcsv -ljansson -lz -lm -lpthread
	build-fuzz/fuzz_gguf -max_total_time=$(FUZZ_SECONDS) -max_len=65536 build-fuzz/corpus-gguf fuzz/seeds
	build-fuzz/fuzz_safetensors -max_total_time=$(FUZZ_SECONDS) -max_len=8192 build-fuzz/corpus-st \
	    fuzz/seeds-st
	QEVAL_DATA=$${QEVAL_DATA:-../shared/data} build-fuzz/fuzz_tokenize \
	    -max_total_time=$(FUZZ_SECONDS) -max_len=4096 build-fuzz/corpus-text fuzz/seeds-text
	build-fuzz/fuzz_tokjson -max_total_time=$(FUZZ_SECONDS) -max_len=8192 build-fuzz/corpus-tokjson \
	    fuzz/seeds-tokjson
	build-fuzz/fuzz_dataset -max_total_time=$(FUZZ_SECONDS) -max_len=4096 build-fuzz/corpus-data \
	    fuzz/seeds-data
	QEVAL_DATA=$${QEVAL_DATA:-../shared/data} build-fuzz/fuzz_model -max_total_time=$(FUZZ_SECONDS) \
	    -max_len=2048 build-fuzz/corpus-model fuzz/seeds-model
	QEVAL_DATA=$${QEVAL_DATA:-../shared/data} build-fuzz/fuzz_job -max_total_time=$(FUZZ_SECONDS) \
	    -max_len=4096 build-fuzz/corpus-job jobs
	build-fuzz/fuzz_merge -max_total_time=$(FUZZ_SECONDS) -max_len=512 build-fuzz/corpus-merge

# Optional models for extra tests (models/ is git-ignored): tools/models.sh.
models:
	@sh tools/models.sh

# The main job: jobs/demo.ini on the default device (PoCL on a machine with no
# GPU) into results/qeval.db, then the format comparison table from it. A
# second `make demo` finds every chunk stored and only prints the table.
demo: deps all
	$(BIN) devices --no-probe
	$(BIN) run jobs/demo.ini
	$(BIN) compare --db results/qeval.db

clean:
	rm -rf build build-asan build-fuzz bin

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
