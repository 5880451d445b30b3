# `make bench`: livemig vs ocf:heartbeat:VirtualDomain, side by side (docs/performance.md). Root.
.PHONY: bench bench-local bench-migration

BENCH_ARGS ?=
BENCH_MIGRATION_ARGS ?=

bench: bench-local bench-migration

bench-local: deps
	$(VPY) -m benchmarks.bench_local $(BENCH_ARGS)

bench-migration: deps
	$(VPY) -m benchmarks.bench_migration $(BENCH_MIGRATION_ARGS)
