# s3mount: build, test and demo.
#
#   make build      bin/s3mount
#   make deps       fuse3 and rsync (apt, only if missing), versitygw, go modules
#   make test       deps, go vet, unit tests (-race), integration tests (real mounts)
#   make demo       local S3 server seeded with files, bucket "demo" mounted at ./mnt
#   make demo-stop  unmount ./mnt and stop the demo server
#   make fmt        gofmt the module
#   make install    bin/s3mount to $(PREFIX)/bin, mount.s3mount link, systemd unit template, fstab example
#   make bench      issue 4's benchmark: s3mount vs raw SDK, page cache, s3fs and rclone (installs the
#                   peers with apt-get when missing); BENCH_FLAGS=-quick for a smoke run, see test/bench/README.md

SHELL := /bin/bash
GO ?= go
TOOLS_BIN ?= $(HOME)/.cache/s3mount-tools/bin
VERSITYGW_VERSION ?= v1.8.0
VERSITYGW ?= $(TOOLS_BIN)/versitygw
export VERSITYGW

DEMO_DIR := $(CURDIR)/.demo
DEMO_MNT := $(CURDIR)/mnt

BENCH_FLAGS ?=
BENCH_PEERS ?= s3fs rclone

.PHONY: all build deps fuse rsync versitygw vet unit integration test demo demo-stop fmt bench bench-peers install uninstall

all: build

build:
	$(GO) build -o bin/s3mount .

deps: fuse rsync versitygw
	$(GO) mod download

fuse:
	@if ! command -v fusermount3 >/dev/null 2>&1; then \
		echo "fusermount3 missing: installing fuse3"; \
		apt-get update && apt-get install -y fuse3; \
	fi

# The integration tests run rsync -a on the mount.
rsync:
	@if ! command -v rsync >/dev/null 2>&1; then \
		echo "rsync missing: installing rsync"; \
		apt-get update && apt-get install -y rsync; \
	fi

versitygw: $(VERSITYGW)

# Built from a temp dir so that it stays out of this module's go.mod.
$(VERSITYGW):
	@mkdir -p $(dir $(VERSITYGW))
	@echo "building versitygw $(VERSITYGW_VERSION) into $(dir $(VERSITYGW)) (takes a few minutes)"
	tmp=$$(mktemp -d) && cd "$$tmp" && \
		GOFLAGS=-buildvcs=false GOBIN=$(abspath $(dir $(VERSITYGW))) \
		$(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION); \
		rc=$$?; rm -rf "$$tmp"; exit $$rc

vet:
	$(GO) vet ./...
	$(GO) vet -tags integration ./test/...

unit:
	$(GO) test -race -count=1 ./...

integration:
	$(GO) test -tags integration -count=1 -timeout 30m ./test/...

test: deps
	$(MAKE) vet
	$(MAKE) unit
	$(MAKE) integration

fmt:
	$(GO) fmt ./...

PREFIX ?= /usr/local
SBINDIR ?= /sbin
UNITDIR ?= /etc/systemd/system

# mount(8) runs /sbin/mount.TYPE: mount.s3mount serves `mount -t s3mount`; fuse3's mount.fuse3 finds
# s3mount on the PATH for `mount -t fuse.s3mount` and fstab lines of that type.
install: build
	install -D -m 0755 bin/s3mount $(DESTDIR)$(PREFIX)/bin/s3mount
	install -d $(DESTDIR)$(SBINDIR)
	ln -sf $(PREFIX)/bin/s3mount $(DESTDIR)$(SBINDIR)/mount.s3mount
	install -D -m 0644 packaging/s3mount@.service $(DESTDIR)$(UNITDIR)/s3mount@.service
	install -D -m 0644 packaging/fstab.example $(DESTDIR)$(PREFIX)/share/doc/s3mount/fstab.example

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/s3mount $(DESTDIR)$(SBINDIR)/mount.s3mount \
		$(DESTDIR)$(UNITDIR)/s3mount@.service $(DESTDIR)$(PREFIX)/share/doc/s3mount/fstab.example

demo: build fuse versitygw
	@$(MAKE) --no-print-directory demo-stop
	$(GO) build -o bin/s3demo ./test/cmd/s3demo
	bin/s3demo -dir $(DEMO_DIR) start
	@mkdir -p $(DEMO_MNT)
	. $(DEMO_DIR)/env && bin/s3mount mount --endpoint-url "$$S3_ENDPOINT" --force-path-style \
		--log-file $(DEMO_DIR)/s3mount.log "$$S3_BUCKET" $(DEMO_MNT)
	@echo
	@echo "Bucket demo is mounted at ./mnt (log: .demo/s3mount.log, keys: .demo/env). Look around:"
	@echo "  ls mnt; ls -R mnt | head -40"
	@echo "  cat mnt/README.txt; less mnt/go/src/net/http/server.go"
	@echo "  (cd mnt && sha256sum -c ../.demo/SHA256SUMS)"
	@echo "  cp mnt/blobs/24MiB.bin /tmp/ && sha256sum /tmp/24MiB.bin"
	@echo "  cp -r /etc/apt mnt/copied-apt && ls -l mnt/copied-apt"
	@echo "  (make demo again starts over: the bucket is wiped and seeded anew)"
	@echo "Stop with: make demo-stop"

demo-stop:
	@for i in 1 2 3 4 5; do \
		grep -qs " $(DEMO_MNT) " /proc/self/mounts || break; \
		fusermount3 -u $(DEMO_MNT) || fusermount3 -uz $(DEMO_MNT); \
		echo "unmounted $(DEMO_MNT)"; \
	done
	@if [ -f $(DEMO_DIR)/versitygw.pid ]; then \
		$(GO) run ./test/cmd/s3demo -dir $(DEMO_DIR) stop; \
	fi

# The benchmark (issue 4). Prints the table to stdout and writes bench-results.txt; progress on stderr.
# Needs root (FUSE mounts, drop_caches). Example: make bench BENCH_FLAGS="-quick -s3mount-flags '--download-threads 16'"
bench: build fuse versitygw bench-peers
	$(GO) build -o bin/s3bench ./test/bench
	bin/s3bench -s3mount-bin $(CURDIR)/bin/s3mount $(BENCH_FLAGS)

# Peers compared by the bench; one that cannot be installed is reported as skipped by the bench.
bench-peers:
	@for p in $(BENCH_PEERS); do \
		if ! command -v $$p >/dev/null 2>&1; then \
			echo "$$p missing: installing it with apt-get"; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y $$p \
				|| { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$p; } \
				|| echo "could not install $$p: the bench will list it as skipped"; \
		fi; \
	done
