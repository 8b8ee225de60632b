#!/usr/bin/env bash
# Runs every fuzz target of edgecore-core for SECONDS each (default 30): first over its seed
# corpus and saved regressions (each input once), then fuzzing. A crash stops the run and leaves
# the input in rust/edgecore-core/fuzz/artifacts/<target>/; minimise it (`cargo fuzz tmin`), fix
# the bug and copy the input into fuzz/regressions/<target>/.
#
#   scripts/fuzz.sh            # CI: 30 s each
#   scripts/fuzz.sh 600        # make fuzz: 10 minutes each
#   scripts/fuzz.sh 60 jwt     # one target
#
# cargo-fuzz needs nightly features: RUSTC_BOOTSTRAP=1 enables them on the installed stable
# toolchain, whose x86_64 standard library ships the sanitizer runtimes.
set -euo pipefail
cd "$(dirname "$0")/../rust/edgecore-core"
SECONDS_EACH="${1:-30}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(http_parse canonical jwt cache_policy mmdb)
export RUSTC_BOOTSTRAP=1 CARGO_TERM_COLOR=never
CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    cargo install -q cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi
cargo fuzz build
for t in "${TARGETS[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/regressions/$t"
    echo "== $t: seeds and regressions"
    cargo fuzz run "$t" "fuzz/seeds/$t" "fuzz/regressions/$t" -- -runs=0 2>&1 | grep -E "INITED|DONE|ERROR|panicked" || true
    echo "== $t: fuzzing for ${SECONDS_EACH}s"
    cargo fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" "fuzz/regressions/$t" -- \
        -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        >"fuzz/corpus/$t.log" 2>&1 || {
        grep -A2 "panicked at" "fuzz/corpus/$t.log" | head -20
        grep -E -A12 "^Failing input|ERROR: AddressSanitizer|ERROR: libFuzzer" "fuzz/corpus/$t.log" | head -60
        exit 1
    }
    grep -E "DONE|stat::number_of_executed_units|stat::peak_rss_mb" "fuzz/corpus/$t.log"
done
