#!/usr/bin/env bash
# Runs the entries of a Procfile (default: Procfile) with .env loaded, each
# line of output prefixed by its name, and stops them all on Ctrl-C. It does
# what `go run github.com/mattn/goreman@v0.3.16 start` does, for machines
# whose module proxy does not serve goreman.
set -euo pipefail
cd "$(dirname "$0")/.."
procfile=${1:-Procfile}
set -a; [ -f .env ] && . ./.env; set +a
go build -o ./data/bin/ftfs ./cmd/ftfs   # build once, not once per entry
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' INT TERM EXIT
while IFS= read -r line; do
  case "$line" in ''|'#'*) continue ;; esac
  name=${line%%:*}
  cmd=${line#*:}
  cmd=${cmd/go run .\/cmd\/ftfs/./data/bin/ftfs}
  ( eval "exec $cmd" 2>&1 | sed -u "s/^/$name | /" ) &
  pids+=($!)
done < "$procfile"
wait
