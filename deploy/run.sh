#!/usr/bin/env bash
# Starts the five services on their default ports with SQLite files under
# DATA_DIR (default ./data), waits until each is ready, prints example calls,
# and stops everything on Ctrl-C. Used by `make run`.
set -uo pipefail

BIN_DIR=${BIN_DIR:-build/bin}
DATA_DIR=${DATA_DIR:-data}
LOG_DIR="$DATA_DIR/logs"
ROUTES_FILE=${ROUTES_FILE:-deploy/routes.conf}
mkdir -p "$LOG_DIR"

pids=()
names=()

stop_all() {
	trap - INT TERM EXIT
	echo
	echo "stopping..."
	kill -TERM "${pids[@]}" 2>/dev/null
	wait "${pids[@]}" 2>/dev/null
	echo "stopped; data is in $DATA_DIR, logs in $LOG_DIR"
}
trap stop_all INT TERM EXIT

# start NAME PORT [VAR=value ...]
start() {
	local name=$1 port=$2
	shift 2
	env PORT="$port" "$@" "$BIN_DIR/hearty-$name" 2>>"$LOG_DIR/$name.log" &
	pids+=($!)
	names+=("$name:$port")
}

start payment 8082 DB_PATH="$DATA_DIR/payment.db" MILEAGE_URL=http://127.0.0.1:8083
start mileage 8083 DB_PATH="$DATA_DIR/mileage.db" PAYMENT_URL=http://127.0.0.1:8082
start order 8081 DB_PATH="$DATA_DIR/order.db" PAYMENT_URL=http://127.0.0.1:8082
start mileage-view 8084 DB_PATH="$DATA_DIR/view.db" PAYMENT_URL=http://127.0.0.1:8082 \
	MILEAGE_URL=http://127.0.0.1:8083
start gateway 8088 ROUTES_FILE="$ROUTES_FILE"

# Wait up to 10 s for every /readyz.
for i in "${!names[@]}"; do
	name=${names[$i]%%:*}
	port=${names[$i]##*:}
	ready=0
	for _ in $(seq 1 200); do
		if ! kill -0 "${pids[$i]}" 2>/dev/null; then
			echo "$name exited at start; the end of $LOG_DIR/$name.log:" >&2
			tail -n 5 "$LOG_DIR/$name.log" >&2
			exit 1
		fi
		if curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
			ready=1
			break
		fi
		sleep 0.05
	done
	if [ "$ready" != 1 ]; then
		echo "$name did not become ready on port $port" >&2
		exit 1
	fi
	printf '  %-13s ready on http://127.0.0.1:%s\n' "$name" "$port"
done

cat <<'MSG'

Hearty is running; the gateway is http://127.0.0.1:8088. Try:

  curl -s -X POST http://127.0.0.1:8088/orders -H 'Content-Type: application/json' \
       -d '{"customerId":"c-1","item":"toast-set","qty":2,"price":4500}'
  curl -s http://127.0.0.1:8088/orders/1
  curl -s http://127.0.0.1:8088/mileageViews/customers/c-1
  curl -s -X POST http://127.0.0.1:8088/orders/1/cancel
  curl -s 'http://127.0.0.1:8088/mileageViews?customerId=c-1'

Logs (JSON lines) are in data/logs/. Press Ctrl-C to stop.
MSG
wait
