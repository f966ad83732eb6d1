#!/usr/bin/env bash
# How many requests per second siplab's front end relays, and at what CPU cost and latency:
# USERS callees register with R1, CALLERS connections send SCENARIO (message, call or
# register) at each of RATES per second for DURATION seconds, open loop, stepping up until
# a step fails badly. Extra arguments go to siplab-load (e.g. --json).
#
#   bench/relay.sh
#   USERS=10000 RATES=2000,5000,10000 SCENARIO=call PIN=1 bench/relay.sh --json
set -euo pipefail

USERS="${USERS:-1000}"
CALLERS="${CALLERS:-20}"
SCENARIO="${SCENARIO:-message}"
RATES="${RATES:-1000,2000,4000,6000,8000,10000,12000,15000}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

build
prepare "$USERS"
start_frontend
load --users "$USERS" --callers "$CALLERS" --scenario "$SCENARIO" \
    --rates "$RATES" --duration "$DURATION" --warmup "$WARMUP" "$@"
