#!/usr/bin/env bash
# A local Prefect stack for this project: server (SQLite, 127.0.0.1 only), the process work pool "svd-local",
# the deployments of prefect.yaml, and a process worker. Everything runs in the background; state, logs and pid
# files live under .prefect/ in the project, so nothing is written to ~.
#
#   flows/serve.sh [start]   start what is not running yet, deploy, print the PREFECT_API_URL to export
#   flows/serve.sh stop      stop the worker and the server
#   flows/serve.sh status    what is running
#
# Port: PREFECT_PORT (default 4200). Prefect comes from the project's .venv, else from PATH.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PWD="$ROOT"  # prefect.yaml's pull step is {{ $PWD }}: the project root, whoever calls this script from where

PORT="${PREFECT_PORT:-4200}"
if [[ -x "$ROOT/.venv/bin/prefect" ]]; then
  BIN="$ROOT/.venv/bin"
elif command -v prefect >/dev/null; then
  BIN="$(dirname "$(command -v prefect)")"
else
  echo "serve.sh: no prefect in $ROOT/.venv or on PATH" >&2
  exit 1
fi
export PATH="$BIN:$PATH"  # flow runs and their `dvc`/`svd` subprocesses use the same environment
PREFECT="$BIN/prefect"

export PREFECT_HOME="$ROOT/.prefect"
export PREFECT_API_URL="http://127.0.0.1:$PORT/api"
export PREFECT_SERVER_API_HOST=127.0.0.1
export PREFECT_SERVER_API_PORT="$PORT"
export PREFECT_API_DATABASE_CONNECTION_URL="sqlite+aiosqlite:///$PREFECT_HOME/prefect.db"
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1 DVC_NO_ANALYTICS=1 MLFLOW_DISABLE_TELEMETRY=true
LOGS="$PREFECT_HOME/logs"
RUN="$PREFECT_HOME/run"
POOL=svd-local
mkdir -p "$LOGS" "$RUN"

alive() { [[ -f "$RUN/$1.pid" ]] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }
healthy() { curl -fsS --max-time 2 "$PREFECT_API_URL/health" >/dev/null 2>&1; }

launch() {  # name, command...: detached in its own session, so stop can end the whole process group by its id
  local name=$1; shift
  if alive "$name"; then
    echo "$name: already running (pid $(cat "$RUN/$name.pid"))"
    return
  fi
  setsid nohup "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
  echo "$name: started (pid $!, log $LOGS/$name.log)"
}

halt() {
  local name=$1 pid
  if ! alive "$name"; then
    rm -f "$RUN/$name.pid"
    echo "$name: not running"
    return
  fi
  pid=$(cat "$RUN/$name.pid")
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
  for _ in $(seq 1 30); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid"
  fi
  rm -f "$RUN/$name.pid"
  echo "$name: stopped"
}

start() {
  if healthy && ! alive server; then
    echo "serve.sh: something else already answers on $PREFECT_API_URL; set PREFECT_PORT" >&2
    exit 1
  fi
  launch server "$PREFECT" server start --host 127.0.0.1 --port "$PORT"
  for _ in $(seq 1 120); do
    healthy && break
    if ! alive server; then
      echo "serve.sh: the server exited; last lines of $LOGS/server.log:" >&2
      tail -n 20 "$LOGS/server.log" >&2
      exit 1
    fi
    sleep 1
  done
  healthy || { echo "serve.sh: no healthy server on $PREFECT_API_URL after 120 s" >&2; exit 1; }
  echo "server: healthy at $PREFECT_API_URL"

  "$PREFECT" work-pool inspect "$POOL" >/dev/null 2>&1 || "$PREFECT" work-pool create "$POOL" --type process
  "$PREFECT" --no-prompt deploy --all >"$LOGS/deploy.log" 2>&1 || {
    echo "serve.sh: prefect deploy failed; see $LOGS/deploy.log" >&2
    tail -n 20 "$LOGS/deploy.log" >&2
    exit 1
  }
  echo "deployments: $(grep -o "Deployment '[^']*'" "$LOGS/deploy.log" | sort -u | tr '\n' ' ')"
  launch worker "$PREFECT" worker start --pool "$POOL" --type process --name "svd-local-$(hostname)"

  cat <<EOF

Prefect is up. In your shell:
  export PREFECT_API_URL=$PREFECT_API_URL
  export PREFECT_HOME=$PREFECT_HOME
  prefect deployment run svd/full-pipeline --watch
UI: http://127.0.0.1:$PORT   Stop: flows/serve.sh stop
EOF
}

status() {
  for name in server worker; do
    if alive "$name"; then echo "$name: running (pid $(cat "$RUN/$name.pid"))"; else echo "$name: not running"; fi
  done
  if healthy; then echo "api: healthy at $PREFECT_API_URL"; else echo "api: not answering at $PREFECT_API_URL"; fi
}

case "${1:-start}" in
  start) start ;;
  stop) halt worker; halt server ;;
  status) status ;;
  *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac
