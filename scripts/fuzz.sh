#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ for a bounded time (`make fuzz`; not in CI).
#
#   FUZZ_SECONDS   seconds per target (default 60)
#   FUZZ_TARGETS   space-separated targets (default: config compose interpolate archive)
#
# cargo-fuzz is installed from crates.io on first use (skipped when present).
# Only a stable toolchain exists here: RUSTC_BOOTSTRAP=1 lets it accept the
# unstable flags cargo-fuzz passes. No sanitizer: the fuzzed crates deny
# unsafe code, so what fuzzing looks for is panics, arithmetic overflows (debug
# assertions are on), hangs and runaway memory, which libFuzzer catches by
# itself, and the instrumented build of the whole agent is much faster.
#
# Each target keeps its growing corpus in fuzz/corpus/TARGET (not committed)
# and starts from the committed seeds in fuzz/seeds/TARGET. A crash stops the
# run with its input in fuzz/artifacts/TARGET/: turn it into a regression test
# next to the code it broke, then fix the code.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds="${FUZZ_SECONDS:-60}"
read -r -a targets <<<"${FUZZ_TARGETS:-config compose interpolate archive}"

case "$seconds" in
    '' | *[!0-9]*) echo "fuzz.sh: FUZZ_SECONDS must be a number of seconds, got '$seconds'" >&2; exit 2 ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz (cargo install --locked cargo-fuzz)" >&2
    cargo install --locked cargo-fuzz
fi

export RUSTC_BOOTSTRAP=1
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/seeds/$t"
    echo "==> fuzz $t for ${seconds}s" >&2
    # -timeout: one input taking longer than 10 s is a hang, reported as a crash.
    cargo fuzz run --sanitizer none "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
done
