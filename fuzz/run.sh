#!/usr/bin/env bash
# Runs one fuzz target for a while: fuzz/run.sh stream_decoder|header_parsers|proxy_request [SECONDS]
#
# cargo fuzz needs nightly flags (-Z sanitizer=...); RUSTC_BOOTSTRAP=1 lets the stable
# toolchain accept them. The corpus is seeded from the RFC 4475 torture messages: whole
# messages (behind the three control bytes stream_decoder reads first) and their header
# values, one per file, for header_parsers.
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?usage: run.sh TARGET [SECONDS]}
seconds=${2:-60}
rfc=${SIPLAB_SHARED:-../../shared}/testdata/rfc4475
corpus=corpus/$target
mkdir -p "$corpus"
for f in "$rfc"/*.dat; do
    name=$(basename "$f" .dat)
    case $target in
        stream_decoder)
            # Seed 7, default limits; then a small-limits variant.
            { printf '\007\000\000'; cat "$f"; } >"$corpus/rfc4475-$name"
            { printf '\031\001\021'; cat "$f"; } >"$corpus/rfc4475-small-$name"
            ;;
        proxy_request)
            # The first byte picks who sent it (no name, a client, a server); then the message.
            for who in 0 1 2; do
                { printf "\\00$who"; cat "$f"; } >"$corpus/rfc4475-$who-$name"
            done
            ;;
        header_parsers)
            i=0
            # Header values (after "Name:"), with folding left in place is not needed here.
            grep -a '^[A-Za-z-]* *:' "$f" | sed -e 's/^[^:]*: *//' -e 's/\r$//' |
                while IFS= read -r value; do
                    i=$((i + 1))
                    printf '%s' "$value" >"$corpus/rfc4475-$name-$i"
                done
            ;;
    esac
done
export RUSTC_BOOTSTRAP=1
exec cargo fuzz run "$target" "$corpus" -- \
    -dict=sip.dict -max_total_time="$seconds" -print_final_stats=1 ${FUZZ_ARGS:-}
