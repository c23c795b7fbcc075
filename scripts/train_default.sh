#!/usr/bin/env bash
# The long run of the default model: one command to start/resume it in the background, watch it, stop it.
#   bash scripts/train_default.sh start    # resume runs/default_long/ (or warm-start from the shipped model)
#   bash scripts/train_default.sh status   # process, last log/val rows, best candidate
#   bash scripts/train_default.sh stop     # SIGTERM: finishes the step, writes the checkpoint, exits
# Watch: tensorboard --logdir runs/default_long/tb ; tail -f runs/default_long/train.out
# Env: TRAIN_CONFIG (default configs/default_long.yaml), TRAIN_THREADS (default 2), TRAIN_NICE (default 10).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
config="${TRAIN_CONFIG:-configs/default_long.yaml}"
out_dir="$(python3 -c 'import sys,yaml; print(yaml.safe_load(open(sys.argv[1]))["out_dir"])' "$config")"
pid_file="$out_dir/train.pid"
mkdir -p "$out_dir"

running() { [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; }

case "${1:-status}" in
  start)
    if running; then echo "already running (pid $(cat "$pid_file")), $out_dir"; exit 0; fi
    # shellcheck disable=SC1091
    . scripts/env.sh
    threads="${TRAIN_THREADS:-2}"
    OMP_NUM_THREADS="$threads" nohup nice -n "${TRAIN_NICE:-10}" \
      roi-codec train --config "$config" --set "threads=$threads" >>"$out_dir/train.out" 2>&1 &
    echo $! >"$pid_file"
    echo "started pid $! ($threads threads, nice ${TRAIN_NICE:-10}); log: $out_dir/train.out"
    ;;
  stop)
    if ! running; then echo "not running"; exit 0; fi
    pid="$(cat "$pid_file")"
    # SIGTERM, not SIGINT: bash starts background jobs with SIGINT ignored, so a SIGINT sent before the trainer
    # installs its handler would be lost.  During start-up (imports, data, resume) SIGTERM ends the process at once
    # (nothing new to save); in the loop it stops after the current step and writes the checkpoint.
    kill -TERM "$pid"
    for _ in $(seq 1 180); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    if kill -0 "$pid" 2>/dev/null; then echo "still running after 180 s (pid $pid)" >&2; exit 1; fi
    rm -f "$pid_file"
    tail -n 2 "$out_dir/train.out"
    ;;
  status)
    if running; then echo "running (pid $(cat "$pid_file"))"; else echo "not running"; fi
    [ -f "$out_dir/log.csv" ] && { head -n 1 "$out_dir/log.csv"; tail -n 2 "$out_dir/log.csv"; }
    [ -f "$out_dir/val.csv" ] && tail -n 5 "$out_dir/val.csv"
    [ -f "$out_dir/best_model.pt" ] && ls -l "$out_dir/best_model.pt"
    # each skipped non-finite step is recorded there (what was non-finite: loss parts, likelihoods, gradients)
    if [ -f "$out_dir/nonfinite.jsonl" ]; then
      echo "non-finite steps recorded: $(wc -l <"$out_dir/nonfinite.jsonl") ($out_dir/nonfinite.jsonl)"
    fi
    ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
