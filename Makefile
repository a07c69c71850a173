# s3mount: build, test and demo.
#
#   make build      bin/s3mount
#   make deps       fuse3 and rsync (apt, only if missing), versitygw, go modules
#   make test       deps, go vet, unit tests (-race), integration tests (real mounts)
#   make demo       local S3 server seeded with files, bucket "demo" mounted at ./mnt
#   make demo-mount mount ./mnt again on the running demo server, no reseeding (DEMO_FLAGS=... adds flags)
#   make demo-stop  unmount ./mnt and stop the demo server
#   make fmt        gofmt the module
#   make install    bin/s3mount to $(PREFIX)/bin, mount.s3mount link, systemd unit template, fstab example,
#                   man page, bash/zsh/fish completion
#   make man        bin/s3mount.1 (and .gz), generated from the CLI
#   make completions  bin/completions/{s3mount.bash,_s3mount,s3mount.fish}
#   make deb        bin/s3mount_$(VERSION)_$(ARCH).deb with nfpm (/usr/bin/s3mount, depends on fuse3)
#   make deb-check  build the .deb and check its contents with dpkg-deb -c (part of make test)
#   make bench      issue 4's benchmark: s3mount vs raw SDK, page cache, s3fs and rclone (installs the
#                   peers with apt-get when missing); BENCH_FLAGS=-quick for a smoke run, see test/bench/README.md
#   make bench-peers  install the peers the bench compares (s3fs, rclone) when missing

SHELL := /bin/bash
GO ?= go
TOOLS_BIN ?= $(HOME)/.cache/s3mount-tools/bin
VERSITYGW_VERSION ?= v1.8.0
VERSITYGW ?= $(TOOLS_BIN)/versitygw
export VERSITYGW
NFPM_VERSION ?= v2.45.2
NFPM ?= $(TOOLS_BIN)/nfpm
VERSION ?= 0.1.0
DEB_ARCH ?= $(shell $(GO) env GOARCH)
DEB := bin/s3mount_$(VERSION)_$(DEB_ARCH).deb

DEMO_DIR := $(CURDIR)/.demo
DEMO_MNT := $(CURDIR)/mnt

BENCH_FLAGS ?=
BENCH_PEERS ?= s3fs rclone

.PHONY: all build deps fuse rsync versitygw nfpm vet unit integration test demo demo-mount demo-stop fmt bench bench-peers install uninstall \
	man completions deb deb-check

all: build

build:
	$(GO) build -o bin/s3mount .

deps: fuse rsync versitygw nfpm
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

nfpm: $(NFPM)

# The .deb packager, also kept out of go.mod.
$(NFPM):
	@mkdir -p $(dir $(NFPM))
	@echo "building nfpm $(NFPM_VERSION) into $(dir $(NFPM))"
	tmp=$$(mktemp -d) && cd "$$tmp" && \
		GOFLAGS=-buildvcs=false GOBIN=$(abspath $(dir $(NFPM))) \
		$(GO) install github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION); \
		rc=$$?; rm -rf "$$tmp"; exit $$rc

man: build
	bin/s3mount man > bin/s3mount.1
	gzip -9nfk bin/s3mount.1

completions: build
	@mkdir -p bin/completions
	bin/s3mount completion bash > bin/completions/s3mount.bash
	bin/s3mount completion zsh > bin/completions/_s3mount
	bin/s3mount completion fish > bin/completions/s3mount.fish

deb: build man completions nfpm
	rm -f $(DEB)
	VERSION=$(VERSION) ARCH=$(DEB_ARCH) $(NFPM) package --config packaging/nfpm.yaml --packager deb --target $(DEB)

deb-check: deb
	packaging/check-deb.sh $(DEB)

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
	$(MAKE) deb-check
	$(MAKE) integration

fmt:
	$(GO) fmt ./...

PREFIX ?= /usr/local
SBINDIR ?= /sbin
UNITDIR ?= /etc/systemd/system

# mount(8) runs /sbin/mount.TYPE: mount.s3mount serves `mount -t s3mount`; fuse3's mount.fuse3 finds
# s3mount on the PATH for `mount -t fuse.s3mount` and fstab lines of that type.
install: build man completions
	install -D -m 0755 bin/s3mount $(DESTDIR)$(PREFIX)/bin/s3mount
	install -d $(DESTDIR)$(SBINDIR)
	ln -sf $(PREFIX)/bin/s3mount $(DESTDIR)$(SBINDIR)/mount.s3mount
	install -D -m 0644 packaging/s3mount@.service $(DESTDIR)$(UNITDIR)/s3mount@.service
	install -D -m 0644 packaging/fstab.example $(DESTDIR)$(PREFIX)/share/doc/s3mount/fstab.example
	install -D -m 0644 bin/s3mount.1 $(DESTDIR)$(PREFIX)/share/man/man1/s3mount.1
	install -D -m 0644 bin/completions/s3mount.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/s3mount
	install -D -m 0644 bin/completions/_s3mount $(DESTDIR)$(PREFIX)/share/zsh/vendor-completions/_s3mount
	install -D -m 0644 bin/completions/s3mount.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/s3mount.fish

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/s3mount $(DESTDIR)$(SBINDIR)/mount.s3mount \
		$(DESTDIR)$(UNITDIR)/s3mount@.service $(DESTDIR)$(PREFIX)/share/doc/s3mount/fstab.example \
		$(DESTDIR)$(PREFIX)/share/man/man1/s3mount.1 \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions/s3mount \
		$(DESTDIR)$(PREFIX)/share/zsh/vendor-completions/_s3mount \
		$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/s3mount.fish

demo: build fuse versitygw
	@$(MAKE) --no-print-directory demo-stop
	$(GO) build -o bin/s3demo ./test/cmd/s3demo
	bin/s3demo -dir $(DEMO_DIR) start
	@mkdir -p $(DEMO_MNT)
	. $(DEMO_DIR)/env && bin/s3mount mount --endpoint-url "$$S3_ENDPOINT" --force-path-style \
		--log-file $(DEMO_DIR)/s3mount.log "$$S3_BUCKET" $(DEMO_MNT)
	@echo
	@echo "Bucket demo is mounted at ./mnt (log: .demo/s3mount.log, endpoint and keys: .demo/env). Look around:"
	@echo "  ls mnt; ls -R mnt | head -40"
	@echo "  cat mnt/README.txt; less mnt/go/src/net/http/server.go"
	@echo "  (cd mnt && sha256sum -c ../.demo/SHA256SUMS)"
	@echo "  cp mnt/blobs/24MiB.bin /tmp/ && sha256sum /tmp/24MiB.bin"
	@echo "  cp -r /etc/apt mnt/copied-apt && ls -l mnt/copied-apt"
	@echo "  (make demo again starts over: the bucket is wiped and seeded anew;"
	@echo "   make demo-mount mounts ./mnt again without reseeding, DEMO_FLAGS=... adds mount flags)"
	@echo "Stop with: make demo-stop"

# Mount ./mnt again on the running demo server, without reseeding (after an unmount, or to try flags):
# make demo-mount DEMO_FLAGS="--copy-cache-size 2G"
demo-mount: build
	@test -f $(DEMO_DIR)/versitygw.pid && kill -0 $$(cat $(DEMO_DIR)/versitygw.pid) 2>/dev/null || \
		{ echo "no demo server running: make demo starts one"; exit 1; }
	@if grep -qs " $(DEMO_MNT) " /proc/self/mounts; then fusermount3 -u $(DEMO_MNT); fi
	@mkdir -p $(DEMO_MNT)
	. $(DEMO_DIR)/env && bin/s3mount mount --endpoint-url "$$S3_ENDPOINT" --force-path-style \
		--log-file $(DEMO_DIR)/s3mount.log $(DEMO_FLAGS) "$$S3_BUCKET" $(DEMO_MNT)
	@echo "Bucket demo is mounted at ./mnt again (log: .demo/s3mount.log). Stop with: make demo-stop"

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
