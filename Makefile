# ngx-realtime: build, run and test the nginx realtime module.
#
#   make run     install what is missing, build, serve the demo on :8080
#   make test    install what the tests need, build, run every test
#   make build   the dynamic module only, into build/
#   make bench   ngx-realtime vs Nchan load benchmark, writes bench/RESULTS.md
#                (BENCH_QUICK=1 for a run of under a minute)
#   make integration-asan
#                the @pytest.mark.asan integration tests with the module
#                built under ASan+UBSan (build/asan/) in Debian's nginx

NGX_SRC      ?= /usr/share/nginx/src
NGINX        ?= /usr/sbin/nginx
BUILD        := $(CURDIR)/build
MODULE       := $(BUILD)/ngx_http_realtime_module.so
PYTHON       ?= /usr/bin/python3
# each fuzzer's short run in make test; make fuzz FUZZ_SECONDS=300 for more
FUZZ_SECONDS ?= 8

# the module again, under AddressSanitizer + UBSan, loaded into the stock
# nginx with libasan preloaded (t/conftest.py reads the NGX_REALTIME_* env)
ASAN_BUILD   := $(BUILD)/asan
ASAN_MODULE  := $(ASAN_BUILD)/ngx_http_realtime_module.so
ASAN_LOGS    := $(ASAN_BUILD)/logs
SAN_CC_OPT   := -fsanitize=address,undefined -fno-omit-frame-pointer \
                -fno-sanitize-recover=undefined
SAN_LD_OPT   := -fsanitize=address,undefined

# nginx adds -W -Wall -Wpointer-arith -Wno-unused-parameter -Werror
CC_OPT       := -g -O2 -fPIC -fstack-protector-strong -Wall -Wextra -Werror \
                -Wno-unused-parameter -Wformat -Werror=format-security

APT_BUILD    := gcc make nginx-dev nginx-light libhiredis-dev \
                libjansson-dev libssl-dev libpcre2-dev zlib1g-dev
# libjwt: the reference of the signature check's unit test, and the bench
APT_TEST     := $(APT_BUILD) libjwt-dev python3 python3-pytest \
                python3-websockets \
                python3-jwt python3-redis redis-server openssl curl \
                clang libclang-rt-14-dev procps iproute2 libasan8 \
                libubsan1 chromium fonts-dejavu-core python3-h2 \
                prometheus ca-certificates

# the Socket.IO harness (t/sioclient.py) drives the npm socket.io-client
# under node; Debian's nodejs and npm only where no node is installed
JS_DIR       := t/js
JS_STAMP     := $(JS_DIR)/node_modules/.installed
APT_NODE      = $(if $(shell command -v node),,nodejs) \
                $(if $(shell command -v npm),,npm)

SHELL        := /bin/bash
SUDO         := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SRCS         := $(wildcard src/*.c src/*.h) config

.PHONY: all build run test unit asan fuzz integration deps-build deps-test \
        deps-js \
        asan-module integration-asan clean bench bench-cluster chaos

all: build

build: deps-build $(MODULE)

# Installs the Debian packages of $(1) that are not installed yet.
define apt_install
	@missing=$$(for p in $(1); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	        | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing:" $$missing; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	        --no-install-recommends $$missing >/dev/null; \
	fi
endef

deps-build:
	$(call apt_install,$(APT_BUILD))

deps-test:
	$(call apt_install,$(APT_TEST))
	$(MAKE) deps-js

# node and t/js/node_modules (socket.io-client's bundle for the demo's
# Socket.IO page, the test harnesses)
deps-js:
	$(call apt_install,$(APT_NODE))
	@if [ ! -e $(JS_STAMP) ] || \
	    [ $(JS_DIR)/package-lock.json -nt $(JS_STAMP) ]; then \
	    npm ci --prefix $(JS_DIR) --no-audit --no-fund && \
	    touch $(JS_STAMP); \
	fi

$(BUILD)/Makefile: config
	@mkdir -p $(BUILD)
	cd $(NGX_SRC) && . ./conf_flags && ./configure "$${NGX_CONF_FLAGS[@]}" \
	    --with-cc-opt='$(CC_OPT)' --add-dynamic-module=$(CURDIR) \
	    --builddir=$(BUILD) > $(BUILD)/configure.log 2>&1 \
	    || { tail -20 $(BUILD)/configure.log; exit 1; }

$(MODULE): $(BUILD)/Makefile $(SRCS)
	$(MAKE) -s -f $(BUILD)/Makefile -C $(NGX_SRC) modules
	@ls -l $(MODULE)

asan-module: deps-build $(ASAN_MODULE)

$(ASAN_BUILD)/Makefile: config Makefile
	@mkdir -p $(ASAN_BUILD)
	cd $(NGX_SRC) && . ./conf_flags && ./configure "$${NGX_CONF_FLAGS[@]}" \
	    --with-cc-opt='$(CC_OPT) $(SAN_CC_OPT)' \
	    --with-ld-opt='$(SAN_LD_OPT)' --add-dynamic-module=$(CURDIR) \
	    --builddir=$(ASAN_BUILD) > $(ASAN_BUILD)/configure.log 2>&1 \
	    || { tail -20 $(ASAN_BUILD)/configure.log; exit 1; }

$(ASAN_MODULE): $(ASAN_BUILD)/Makefile $(SRCS)
	$(MAKE) -s -f $(ASAN_BUILD)/Makefile -C $(NGX_SRC) modules
	@ls -l $(ASAN_MODULE)

run: build deps-js
	@mkdir -p $(BUILD)/run/tmp
	@echo
	@echo "  ngx-realtime demo: open http://127.0.0.1:8080/ in two tabs"
	@echo "  (Socket.IO: /socketio.html; echo WebSocket at"
	@echo "  ws://127.0.0.1:8080/echo; Ctrl-C stops)"
	@echo
	$(NGINX) -p $(CURDIR)/ -c conf-examples/quickstart.conf \
	    -e $(BUILD)/run/error.log -g 'daemon off;'

unit: deps-test
	$(MAKE) -C t/unit test

asan: deps-test
	$(MAKE) -C t/unit asan

fuzz: deps-test
	$(MAKE) -C t/unit fuzz FUZZ_SECONDS=$(FUZZ_SECONDS)

integration: build deps-test
	$(PYTHON) -m pytest -q -p no:cacheprovider t/ --ignore=t/unit \
	    --ignore=t/fuzz

# Leaks are not checked: nginx does not free its pools at exit. ASan
# reports go to files in $(ASAN_LOGS), which t/conftest.py fails a test on.
# A worker's UBSan report goes to the error log instead (the UBSan runtime
# starts at its first report and reads /proc/self/environ, which nginx's
# setproctitle has overwritten), which the tests' log checks fail on.
# The log directory is world-writable: run as root, nginx's workers are
# nobody.
integration-asan: asan-module deps-test
	@rm -rf $(ASAN_LOGS) && install -d -m 1777 $(ASAN_LOGS)
	NGX_REALTIME_MODULE=$(ASAN_MODULE) \
	NGX_REALTIME_PRELOAD=$$(gcc -print-file-name=libasan.so) \
	NGX_REALTIME_SANITIZER_LOGS=$(ASAN_LOGS) \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:halt_on_error=1:log_path=$(ASAN_LOGS)/asan \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$(ASAN_LOGS)/ubsan \
	$(PYTHON) -m pytest -q -p no:cacheprovider t/ --ignore=t/unit \
	    --ignore=t/fuzz -m "asan and not no_asan"

test: deps-test build
	$(MAKE) -C t/unit test asan fuzz FUZZ_SECONDS=$(FUZZ_SECONDS)
	$(PYTHON) -m pytest -q -p no:cacheprovider t/ --ignore=t/unit \
	    --ignore=t/fuzz
	$(MAKE) integration-asan

# the load benchmark: bench/loadgen.c drives Debian's nginx with this module
# and then with Nchan (libnginx-mod-nchan); see bench/run.py
APT_BENCH    := gcc make python3 nginx libnginx-mod-nchan redis-server \
                libjwt-dev procps valgrind linux-perf

# The chaos scenarios of t/test_chaos.py in their long form (a minute of
# publishing each); make test runs them for a few seconds. The counts go
# to build/chaos.txt.
CHAOS_SECONDS ?= 60

chaos: build deps-test
	@rm -f $(BUILD)/chaos.txt
	NGX_REALTIME_CHAOS_SECONDS=$(CHAOS_SECONDS) \
	NGX_REALTIME_CHAOS_REPORT=$(BUILD)/chaos.txt \
	NGX_REALTIME_TEST_WATCHDOG=$$(( $(CHAOS_SECONDS) * 3 + 120 )) \
	$(PYTHON) -m pytest -q -s -p no:cacheprovider t/test_chaos.py
	@cat $(BUILD)/chaos.txt

bench: build
	$(call apt_install,$(APT_BENCH))
	$(MAKE) -C bench
	$(PYTHON) bench/run.py

# issue 13: one Redis, a 1-shard and a 3-shard Redis Cluster, one section
bench-cluster: build
	$(call apt_install,$(APT_BENCH))
	$(MAKE) -C bench
	$(PYTHON) bench/cluster.py

clean:
	rm -rf $(BUILD)
