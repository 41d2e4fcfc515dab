#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# Train the shipped SING-INN for the BCR 1/48 natural-image DeepJSCC, in the background,
# once that JSCC has finished training (its history.json reaches step $JSCC_STEPS, default 3000 as in
# scripts/train_jscc_models.sh, and no train-jscc process writes to it any more): the INN records the JSCC's model_id (a digest of its weights), so it must be
# trained on the final weights. 1 torch thread, checkpoints every 5 minutes, capped at 45 minutes of
# wall time (the last checkpoint is the shipped model; re-running this resumes).
# Usage (from the repository root):  nohup sh sim/results/inn/train_shipped_inn.sh > runs/inn-train.log 2>&1 &
set -u
JSCC=models/jscc-natural64-bcr1_48
OUT=models/jscc-natural64-bcr1_48-inn
STEPS=${STEPS:-2000}
JSCC_STEPS=${JSCC_STEPS:-3000}
while :; do
    last=$(.venv/bin/python -c "import json;h=json.load(open('$JSCC/history.json'));print(h[-1]['step'] if h else 0)" 2>/dev/null || echo 0)
    if [ "${last:-0}" -ge "$JSCC_STEPS" ] && ! pgrep -f "train-jscc.*--out $JSCC( |\$)" >/dev/null; then
        break
    fi
    echo "$(date -u +%H:%M:%S) waiting for $JSCC (step ${last:-?} of $JSCC_STEPS)"
    sleep 120
done
sleep 30
echo "$(date -u +%H:%M:%S) training $OUT"
exec timeout 2700 .venv/bin/python -m sing.cli train-inn --jscc "$JSCC" --out "$OUT" --steps "$STEPS" \
    --batch 16 --lr 5e-4 --snr-min -5 --snr-max 15 --lambda-d 0.01 --threads 1 \
    --ckpt-minutes 5 --log-every 50 --no-progress
