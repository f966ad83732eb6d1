#!/usr/bin/env bash
# What one registered user costs siplab's front end in memory: USERS users connect (each over
# its own mutual-TLS connection) and register; R1's RSS and PSS before, with the connections
# up and with every binding are compared, per user, per connection and per binding.
# Extra arguments go to siplab-load (e.g. --json, --hold 60).
#
#   bench/memory.sh
#   USERS=20000 bench/memory.sh --json
set -euo pipefail

USERS="${USERS:-10000}"

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

build
prepare "$USERS"
start_frontend
# Let start-up allocations settle before the baseline is read.
sleep 1
load --users "$USERS" --scenario register-only "$@"
