#!/usr/bin/env bash
# one_at_a_time.sh LOCK COMMAND...: run COMMAND holding LOCK (flock), one run per machine. When another run
# holds LOCK, say so and wait for it. The lock is not handed down to COMMAND (-o): a daemon that outlives
# the run cannot keep it. Exit status: COMMAND's.
set -uo pipefail
lock=$1
shift
flock -o -n -E 75 "$lock" "$@"
rc=$?
if [ "$rc" = 75 ]; then
    echo "another run holds $lock (one make test at a time on a machine): this one starts when it ends"
    flock -o "$lock" "$@"
    rc=$?
fi
exit "$rc"
