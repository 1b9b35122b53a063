#!/usr/bin/env bash
# `make run-with-emulator`: the ZEGO emulator and the gateway as two processes, wired together
# (the gateway signs with the emulator's secrets and calls its API; the emulator posts callbacks to
# the gateway's HTTP port), so you can kill either one and watch the other. Ctrl-C stops both.
#
# The emulator keeps its state in var/emulator-standalone.json and writes its secrets, as the
# AGENTGW_ZEGO_* variables, to var/emulator-secrets.env (mode 0600). To restart only the gateway:
#   set -a; . var/emulator-secrets.env; set +a; AGENTGW_DB_PATH=var/two-process.db .venv/bin/agentgw serve
set -euo pipefail

BIN=${BIN:-.venv/bin}
EMULATOR_PORT=${EMULATOR_PORT:-8090}
export AGENTGW_HTTP_LISTEN=${AGENTGW_HTTP_LISTEN:-127.0.0.1:8080}
export AGENTGW_DB_PATH=${AGENTGW_DB_PATH:-var/two-process.db}
SECRETS=var/emulator-secrets.env

mkdir -p var
rm -f "$SECRETS"
"$BIN/python" -m zego_emulator --port "$EMULATOR_PORT" \
	--state-file var/emulator-standalone.json --secrets-file "$SECRETS" \
	--callback-url "http://$AGENTGW_HTTP_LISTEN/v1/zego/callbacks" &
emulator=$!
gateway=
trap 'kill $emulator $gateway 2>/dev/null || true; wait 2>/dev/null || true' EXIT INT TERM

for _ in $(seq 100); do
	[ -s "$SECRETS" ] && break
	kill -0 "$emulator" 2>/dev/null || { echo "run-with-emulator: the emulator did not start" >&2; exit 1; }
	sleep 0.1
done
set -a
# shellcheck source=/dev/null
. "$SECRETS"
set +a

"$BIN/agentgw" serve "$@" &
gateway=$!
echo "run-with-emulator: emulator pid $emulator (port $EMULATOR_PORT), gateway pid $gateway" >&2
# Returns when both have exited; killing one leaves the other running.
wait
