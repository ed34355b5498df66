#!/usr/bin/env bash
# A few steps of every training stage on a small subset, so CI notices when the training code breaks.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
py=/usr/bin/python3
$py training/train_judge.py --out "$tmp/judge" --epochs 1 --limit 512 --threads 2
$py training/train.py --run "$tmp/run" --steps 4 --limit 512 --judge "$tmp/judge/judge.pt" --eval-every 2 --ema-start 2 --save-every 2 --threads 2
$py training/train.py --run "$tmp/run" --steps 6 --limit 512 --judge "$tmp/judge/judge.pt" --eval-every 2 --ema-start 2 --save-every 2 --threads 2 > "$tmp/resume.log"
grep 'resumed at step 4' "$tmp/resume.log" >/dev/null
$py training/export.py --run "$tmp/run" --checkpoint last.pt --out "$tmp/model" --reference "$tmp/ref" --stat-batches 1 --stat-per-class 2 --threads 2
test -s "$tmp/model/model.safetensors" && test -s "$tmp/ref/out-t1.npy"
echo "training smoke run: ok"
