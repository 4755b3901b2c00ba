#!/usr/bin/env bash
# npm run bench:peers (and bench:scale, which adds --scale): raises the open-files limit for the
# bench and the processes it starts (10,000 idle streams per target, 50,000 with --scale, on both
# ends), as far as the hard limit allows, then runs bench/peers.ts with the arguments given.
set -euo pipefail
cd "$(dirname "$0")/.."
want=65536
ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec node --import tsx bench/peers.ts "$@"
