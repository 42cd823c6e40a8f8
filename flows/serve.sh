#!/usr/bin/env bash
# A local stack for this project, as production runs it on separate machines: a Prefect server (SQLite, 127.0.0.1
# only), two process work pools with a worker each ("svd-cpu": world, curation, registry and the orchestrating
# flow; "svd-gpu": training and evaluation), the deployments of prefect.yaml, and an MLflow tracking server
# (SQLite backend, artifacts served from mlruns/artifacts, 127.0.0.1) that every stage logs to through
# MLFLOW_TRACKING_URI. Everything runs in the background; state, logs and pid files live under .prefect/ in the
# project, so nothing is written to ~.
#
#   flows/serve.sh [start]   start what is not running yet, deploy, print the variables to export
#   flows/serve.sh stop      stop the workers and the servers
#   flows/serve.sh status    what is running
#
# Ports: PREFECT_PORT (default 4200), MLFLOW_PORT (default 5000). Prefect and MLflow come from the project's .venv,
# else from PATH.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PWD="$ROOT"  # prefect.yaml's pull step is {{ $PWD }}: the project root, whoever calls this script from where

PORT="${PREFECT_PORT:-4200}"
MLFLOW_PORT="${MLFLOW_PORT:-5000}"
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
MLFLOW="$BIN/mlflow"

export PREFECT_HOME="$ROOT/.prefect"
export PREFECT_API_URL="http://127.0.0.1:$PORT/api"
export PREFECT_SERVER_API_HOST=127.0.0.1
export PREFECT_SERVER_API_PORT="$PORT"
export PREFECT_API_DATABASE_CONNECTION_URL="sqlite+aiosqlite:///$PREFECT_HOME/prefect.db"
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1 DVC_NO_ANALYTICS=1 MLFLOW_DISABLE_TELEMETRY=true
export MLFLOW_TRACKING_URI="http://127.0.0.1:$MLFLOW_PORT"  # the workers inherit it: every stage logs there
LOGS="$PREFECT_HOME/logs"
RUN="$PREFECT_HOME/run"
POOLS=(svd-cpu svd-gpu)
mkdir -p "$LOGS" "$RUN"

alive() { [[ -f "$RUN/$1.pid" ]] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }
healthy() { curl -fsS --max-time 2 "$PREFECT_API_URL/health" >/dev/null 2>&1; }
mlflow_healthy() { curl -fsS --max-time 2 "$MLFLOW_TRACKING_URI/health" >/dev/null 2>&1; }

wait_for() {  # name, check: until the check passes or the process exits (then its log tail) or 120 s pass
  local name=$1 check=$2
  for _ in $(seq 1 120); do
    $check && return 0
    if ! alive "$name"; then
      echo "serve.sh: $name exited; last lines of $LOGS/$name.log:" >&2
      tail -n 20 "$LOGS/$name.log" >&2
      exit 1
    fi
    sleep 1
  done
  echo "serve.sh: $name not healthy after 120 s; see $LOGS/$name.log" >&2
  exit 1
}

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
  if mlflow_healthy && ! alive mlflow; then
    echo "serve.sh: something else already answers on $MLFLOW_TRACKING_URI; set MLFLOW_PORT" >&2
    exit 1
  fi
  launch server "$PREFECT" server start --host 127.0.0.1 --port "$PORT"
  # the same store `svd` uses without a server (paths.mlflow_uri), so runs made before and after share one history
  mkdir -p "$ROOT/mlruns/artifacts"
  launch mlflow "$MLFLOW" server --host 127.0.0.1 --port "$MLFLOW_PORT" \
    --backend-store-uri "sqlite:///$ROOT/mlruns/mlflow.db" --artifacts-destination "$ROOT/mlruns/artifacts" \
    --serve-artifacts --workers 1
  wait_for server healthy
  echo "server: healthy at $PREFECT_API_URL"
  wait_for mlflow mlflow_healthy
  echo "mlflow: healthy at $MLFLOW_TRACKING_URI"

  for pool in "${POOLS[@]}"; do
    "$PREFECT" work-pool inspect "$pool" >/dev/null 2>&1 || "$PREFECT" work-pool create "$pool" --type process
  done
  "$PREFECT" --no-prompt deploy --all >"$LOGS/deploy.log" 2>&1 || {
    echo "serve.sh: prefect deploy failed; see $LOGS/deploy.log" >&2
    tail -n 20 "$LOGS/deploy.log" >&2
    exit 1
  }
  echo "deployments: $(grep -o "Deployment '[^']*'" "$LOGS/deploy.log" | sort -u | tr '\n' ' ')"
  for pool in "${POOLS[@]}"; do
    launch "worker-$pool" "$PREFECT" worker start --pool "$pool" --type process --name "$pool-$(hostname)"
  done

  cat <<EOF

Prefect and MLflow are up. In your shell:
  export PREFECT_API_URL=$PREFECT_API_URL
  export PREFECT_HOME=$PREFECT_HOME
  export MLFLOW_TRACKING_URI=$MLFLOW_TRACKING_URI
  prefect deployment run svd/full-pipeline --watch
Prefect UI: http://127.0.0.1:$PORT   MLflow UI: $MLFLOW_TRACKING_URI   Stop: flows/serve.sh stop
EOF
}

status() {
  for name in server mlflow worker-svd-cpu worker-svd-gpu; do
    if alive "$name"; then echo "$name: running (pid $(cat "$RUN/$name.pid"))"; else echo "$name: not running"; fi
  done
  if healthy; then echo "api: healthy at $PREFECT_API_URL"; else echo "api: not answering at $PREFECT_API_URL"; fi
  if mlflow_healthy; then echo "mlflow: healthy at $MLFLOW_TRACKING_URI"; else echo "mlflow: not answering"; fi
}

case "${1:-start}" in
  start) start ;;
  stop) halt worker-svd-gpu; halt worker-svd-cpu; halt mlflow; halt server ;;
  status) status ;;
  *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac
