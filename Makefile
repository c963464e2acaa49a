# A thin wrapper over CMake. `make run` and `make test` install what is missing
# from Debian's archive first (apt-get as root, sudo otherwise).
BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
CMAKE_FLAGS ?=
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CONFIG ?= config/gpuhook.json

.PHONY: all build deps run test hostile check-config memcheck bench fuzz clean

all: build

deps:
	@scripts/install-deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

var/webhook-secret var/trigger-token:
	@mkdir -p var
	@umask 077 && openssl rand -hex 32 > $@ && chmod 600 $@

run: deps $(BUILD)/CMakeCache.txt var/webhook-secret var/trigger-token
	cmake --build $(BUILD) -j $(JOBS) --target gpuhook
	@scripts/run-banner.sh $(CONFIG)
	exec $(BUILD)/gpuhook --config $(CONFIG)

check-config: build var/webhook-secret var/trigger-token
	$(BUILD)/gpuhook --config $(CONFIG) --check-config

# The tests build with -Werror (CI runs them); a plain `make build` does not.
test: deps
	@/usr/bin/python3 tests/githubapi/openapi.py --fetch >/dev/null || \
		echo "make test: @octokit/openapi not fetched; tests/githubapi's self-test will fail" >&2
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DENABLE_WERROR=ON $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -LE hostile

# The long attacks (ctest label "hostile": hundreds of clients and hostile payloads), which
# `make test` leaves out to stay short; CI runs them on both builds.
hostile: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DENABLE_WERROR=ON $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -L hostile

memcheck: deps build
	cd $(BUILD) && GPUHOOK_WRAPPER="valgrind --leak-check=full --error-exitcode=1 --errors-for-leak-kinds=definite --quiet" \
		ctest --output-on-failure -L integration -E kubeapi

bench: deps build
	bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD)
