# SPDX-License-Identifier: MIT
# Front door for usbwire. Everything real is in meson; this file gives the short commands.
#   make            build everything (programs under build/)
#   make demo       run the demo (see README)
#   make check      build with ASan+UBSan and run the whole test suite
#   make check-interop [SCENARIO=name]   only the real-kernel (qemu) scenarios
#   make check-system   the system tests (real server on 127.0.0.1, ASan build)
#   make fuzz [FUZZ_SECONDS=600]         run every libFuzzer target
#   make format / format-check

BUILD      ?= build
TESTBUILD  ?= build-test
FUZZBUILD  ?= build-fuzz
MESON      ?= meson
FUZZ_SECONDS ?= 60
SCENARIO   ?=

.PHONY: all build-all deps demo check check-unit check-interop check-system fuzz format format-check clean

all: deps
	@test -f $(BUILD)/build.ninja || $(MESON) setup $(BUILD) --buildtype=debugoptimized
	ninja -C $(BUILD)

deps:
	@tools/install-deps all

$(TESTBUILD)/build.ninja:
	$(MESON) setup $(TESTBUILD) -Db_sanitize=address,undefined -Db_lundef=false --buildtype=debug

$(FUZZBUILD)/build.ninja:
	CC=clang $(MESON) setup $(FUZZBUILD) -Dfuzzing=true -Db_sanitize=address,undefined \
		-Db_lundef=false --buildtype=debugoptimized

build-all: all $(TESTBUILD)/build.ninja $(FUZZBUILD)/build.ninja
	ninja -C $(TESTBUILD)
	ninja -C $(FUZZBUILD)

check: build-all
	@tests/run-tests --build $(BUILD) --test-build $(TESTBUILD) --fuzz-build $(FUZZBUILD)

check-unit: build-all
	@tests/run-tests --build $(BUILD) --test-build $(TESTBUILD) --fuzz-build $(FUZZBUILD) --no-interop

check-interop: all
	@tests/run-tests --build $(BUILD) --only-interop $(if $(SCENARIO),--scenario $(SCENARIO))

check-system: $(TESTBUILD)/build.ninja
	ninja -C $(TESTBUILD)
	python3 tests/system/run.py --build $(TESTBUILD) --tap

fuzz: $(FUZZBUILD)/build.ninja
	ninja -C $(FUZZBUILD)
	@tools/run-fuzzers $(FUZZBUILD) $(FUZZ_SECONDS)

demo: all
	@tools/demo $(BUILD)

format:
	@git ls-files '*.c' '*.h' | xargs clang-format -i

format-check:
	@git ls-files '*.c' '*.h' | xargs clang-format --dry-run -Werror

clean:
	rm -rf $(BUILD) $(TESTBUILD) $(FUZZBUILD)
