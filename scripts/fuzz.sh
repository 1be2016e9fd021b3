#!/usr/bin/env bash
# Fuzzes the bridge⇄relay wire format and the JSON-RPC envelope (the `protocol` crate)
# with cargo-fuzz / libFuzzer, from a clean clone, on stable Rust.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      (default: 20 s, every target)
#
# Targets (fuzz/fuzz_targets/):
#   frame_decode   Frame::decode on arbitrary bytes under tiny and default limits; decoded
#                  frames re-encode to the same bytes; arbitrary frames encode decodably.
#   jsonrpc_parse  jsonrpc::parse never panics; splicing numbers over the id and
#                  progressToken spans gives valid one-line JSON carrying those numbers.
#   splice         jsonrpc::splice with arbitrary non-overlapping edits, in any order,
#                  against a simple model; no raw line break outside the replacements.
#
# The first run installs the pinned cargo-fuzz into .test-deps/cargo (git-ignored; about
# 2 minutes) and builds the targets (about 1.5 minutes); later runs start at once. Targets
# are built in release mode with debug assertions and without a sanitizer (`-s none`),
# which is what works on stable Rust. FUZZ_SANITIZER=address selects ASan on nightly.
#
# Every target runs for the given time even if an earlier one crashed; the script exits
# non-zero if any target crashed, hung (an input over 10 s) or ran out of memory.
#
# Longer campaigns:
#   scripts/fuzz.sh 3600                   one hour per target
#   scripts/fuzz.sh 28800 jsonrpc_parse    eight hours on one target
#   FUZZ_ARGS="-fork=2" scripts/fuzz.sh 3600   extra libFuzzer flags (here: 2 processes;
#                                          the machine has 2 cores)
# The corpus grows in fuzz/corpus/<target>/ (git-ignored) and is reused by every later run,
# so campaigns add up; the committed seeds in fuzz/seeds/<target>/ are read too, and so is
# the dictionary fuzz/dict/<target>.dict where there is one. Shrink a grown corpus with
#   PATH="$PWD/.test-deps/cargo/bin:$PATH" cargo fuzz cmin -s none -a --fuzz-dir fuzz <target>
# libFuzzer's log of the last run of each target is fuzz/logs/<target>.log.
#
# Reproducing a crash: the failing input is saved as fuzz/artifacts/<target>/crash-<sha1>
# (or timeout-…, oom-…). From the repository root:
#   export PATH="$PWD/.test-deps/cargo/bin:$PATH"
#   cargo fuzz run  -s none -a --fuzz-dir fuzz <target> fuzz/artifacts/<target>/crash-…  # rerun it
#   cargo fuzz fmt  -s none -a --fuzz-dir fuzz <target> fuzz/artifacts/<target>/crash-…  # show it
#   cargo fuzz tmin -s none -a --fuzz-dir fuzz <target> fuzz/artifacts/<target>/crash-…  # shrink it
# `fmt` prints the input as the target sees it (for splice: the body and the edits), which
# turns into a unit test in protocol/ once the bug is understood.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

# The cargo-fuzz release this script is tested with (builds on stable Rust 1.88+).
CARGO_FUZZ_VERSION=0.13.2
ALL_TARGETS=(frame_decode jsonrpc_parse splice)

secs=${1:-20}
if ! [[ $secs =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]   (targets: ${ALL_TARGETS[*]})" >&2
    exit 2
fi
shift $(($# > 0 ? 1 : 0))
targets=("$@")
if ((${#targets[@]} == 0)); then
    targets=("${ALL_TARGETS[@]}")
fi
for t in "${targets[@]}"; do
    if [[ ! -f fuzz/fuzz_targets/$t.rs ]]; then
        echo "unknown target $t (targets: ${ALL_TARGETS[*]})" >&2
        exit 2
    fi
done
sanitizer=${FUZZ_SANITIZER:-none}
read -r -a extra <<<"${FUZZ_ARGS:-}"

# Pinned cargo-fuzz, installed once into .test-deps/cargo.
deps=$root/.test-deps/cargo
export PATH="$deps/bin:$PATH"
if [[ "$("$deps/bin/cargo-fuzz" --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
    echo "==> installing cargo-fuzz $CARGO_FUZZ_VERSION into .test-deps/cargo"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --root "$deps" --force
fi

echo "==> building fuzz targets (-s $sanitizer)"
(cd fuzz && cargo fuzz build -s "$sanitizer" --debug-assertions)

mkdir -p fuzz/logs
failed=()
summary=()
for t in "${targets[@]}"; do
    corpus=fuzz/corpus/$t
    mkdir -p "$corpus"
    inputs=("$root/$corpus")
    [[ -d fuzz/seeds/$t ]] && inputs+=("$root/fuzz/seeds/$t")
    flags=(-max_total_time="$secs" -timeout=10 -print_final_stats=1)
    [[ -f fuzz/dict/$t.dict ]] && flags+=(-dict="$root/fuzz/dict/$t.dict")
    log=fuzz/logs/$t.log
    echo "==> fuzzing $t for ${secs}s (corpus $corpus, log $log)"
    status=0
    (cd fuzz && cargo fuzz run -s "$sanitizer" --debug-assertions "$t" "${inputs[@]}" \
        -- "${flags[@]}" "${extra[@]}") >"$log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 || true)
    if ((status == 0)); then
        line="$t: ok, ${runs:-?} runs, ${speed:-?} exec/s, ${cov:-cov: ?}"
    else
        failed+=("$t")
        artifact=$(grep -Eo "Test unit written to [^ ]+" "$log" | tail -1 | sed 's/Test unit written to //' || true)
        line="$t: FAILED (exit $status) ${artifact:+artifact $artifact}"
        echo "---- last lines of $log"
        grep -v '^WARNING: Failed to find function' "$log" | tail -n 40
        echo "----"
    fi
    echo "    $line"
    summary+=("$line")
done

echo "==> summary"
printf '    %s\n' "${summary[@]}"
if ((${#failed[@]} > 0)); then
    echo "fuzzing found problems in: ${failed[*]} (see the artifacts above; reproduce as" \
        "described at the top of scripts/fuzz.sh)" >&2
    exit 1
fi
