#!/bin/bash
# One source adapter in one container (docker-compose.yml): `watch` syncs every export file in
# /exports into the registry each INTERVAL seconds and answers the advice requests the house
# answered; `receive` writes the feedback service's deliveries into $BAKEN_ADAPTER_DELIVERY_DIR.
# When either ends, the other is stopped and the container exits non-zero, so its restart
# policy starts both again. SIGTERM (docker stop) stops both and exits 0.
#
#   baken-adapter gcos|amazone|pga [INTERVAL seconds, default 60]
set -u
system=${1:?usage: baken-adapter gcos|amazone|pga [interval seconds]}
interval=${2:-60}

baken adapter "$system" watch --source /exports --interval "$interval" &
watch=$!
baken adapter "$system" receive &
receive=$!

trap 'kill -TERM "$watch" "$receive" 2>/dev/null; wait; exit 0' TERM INT
wait -n
status=$?
echo "baken-adapter $system: watch or receive ended (exit $status); stopping the other" >&2
kill -TERM "$watch" "$receive" 2>/dev/null
wait
exit $((status == 0 ? 1 : status))
