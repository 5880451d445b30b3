# `make bench`: livemig vs ocf:heartbeat:VirtualDomain, side by side (docs/performance.md). Root.
.PHONY: bench bench-local bench-migration bench-window

BENCH_ARGS ?=
BENCH_MIGRATION_ARGS ?=

bench: bench-local bench-migration bench-window

bench-local: deps
	$(VPY) -m benchmarks.bench_local $(BENCH_ARGS)

bench-migration: deps
	$(VPY) -m benchmarks.bench_migration $(BENCH_MIGRATION_ARGS)

# drbd_two_primaries=migration vs always: what the two-primaries window costs a migration.
bench-window: deps
	$(VPY) -m benchmarks.bench_window $(BENCH_WINDOW_ARGS)
