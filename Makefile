# rehost: developer and CI entry points.
#   make build        release binary (target/release/rehost)
#   make deb          Debian package of the release binary (target/debian/rehost_*.deb; cargo-deb)
#   make packaging    regenerate packaging/{man,completions,systemd} from the CLI and cloud-init/
#   make test         tools + Garage + fmt + clippy + build + nextest (what .ci/run runs)
#   make demo         local demo against a Garage in target/garage-demo
#   make demo-clean   stop the demo Garage, remove target/garage-demo and target/demo
#   make bench        backup/restore benchmark vs restic and tar|gzip|aws (bench/RESULTS.md),
#                     then bench-pull, bench-stack, bench-prometheus, bench-cluster and bench-scale
#   make bench-scale  the same on a 4 GiB set and a 1,000,000-file set, page cache dropped,
#                     peers' restores timed with their sync (bench/RESULTS-scale.md; ~1 h)
#   make bench-pull   rehost pull vs rclone sync and s3cmd sync (bench/RESULTS-pull.md)
#   make bench-stack  rehost up vs docker-compose up -d, cold and warm (bench/RESULTS-stack.md)
#   make bench-prometheus  kind: prometheus backups vs tar czf | aws s3 cp (bench/RESULTS-prometheus.md)
#   make bench-cluster  backup/restore/pull on a 3-node Garage cluster vs a single node
#                     (bench/cluster.sh; bench/RESULTS-cluster.md)
#   make vm-drill     the DR drill on QEMU VMs booted with the production user-data
#                     (scripts/vm-drill.sh; its own Garage in target/garage-vm; bench/RESULTS-vm.md)
#   make fuzz         every fuzz target for FUZZ_SECONDS (default 60) each; not part of `make test`
#   make garage-start / garage-stop / garage-status   a dev Garage in target/garage

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo

.PHONY: vm-drill build deb packaging test demo demo-clean bench bench-pull bench-stack bench-prometheus bench-cluster bench-scale fuzz tools garage-start garage-stop garage-status

build:
	$(CARGO) build --release -p rehost

deb:
	command -v cargo-deb >/dev/null || { echo "make deb: cargo-deb is missing; scripts/install-tools.sh installs it" >&2; exit 1; }
	$(CARGO) deb -p rehost

packaging:
	REHOST_UPDATE_PACKAGING=1 $(CARGO) test -p rehost --test packaging

test:
	scripts/test.sh

tools:
	scripts/install-tools.sh

demo:
	scripts/demo.sh

demo-clean:
	if [ -x target/release/rehost ] && [ -f target/demo/rehost.yaml ]; then \
		target/release/rehost -q -c target/demo/rehost.yaml down --volumes || true; fi
	scripts/garage.sh stop target/garage-demo || true
	rm -rf target/garage-demo target/demo

bench:
	bench/run.sh
	$(MAKE) bench-pull
	$(MAKE) bench-stack
	$(MAKE) bench-prometheus
	$(MAKE) bench-cluster
	$(MAKE) bench-scale

bench-cluster:
	bench/cluster.sh

bench-pull:
	bench/pull.sh

bench-stack:
	bench/stack.sh

bench-prometheus:
	bench/prometheus.sh

bench-scale:
	bench/scale.sh

fuzz:
	scripts/fuzz.sh

vm-drill:
	scripts/install-tools.sh
	$(CARGO) build -p rehost
	REHOST_VM_RESULTS=bench/RESULTS-vm.md scripts/vm-drill.sh target/debug/rehost

garage-start:
	scripts/garage.sh start target/garage

garage-stop:
	scripts/garage.sh stop target/garage

garage-status:
	scripts/garage.sh status target/garage
