#!/usr/bin/env bash
# The floor issue's GPU runs (docs/BENCHMARKS.md, "Real models on one GPU"), in the order
# they were made, on a host with onnxruntime-gpu and Ray (device README: stage, unstage).
# Usage: bench/gpu_floor.sh PHASE OUTDIR
#   (PHASE: smoke | a | b | c | lanes | d | e | lat | f | g | h | build | i)
set -uo pipefail
phase=$1; out=$2
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 RAY_DEDUP_LOGS=1
rm=(python bench/realmodels.py run --device cuda --dir bench/models)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
case $phase in
  smoke)  # does the code run on CUDA at all: the demo, auto, on one H100/H200
    python - <<'PY'
import onnxruntime as ort, ray
print(ort.__version__, ort.get_available_providers(), ray.__version__)
PY
    timeout 150 python -m distprec.cli demo --no-live 2>&1 | tail -25 ;;
  a)  # both modes, the CNNs (timeouts bound what candidates cannot finish)
    "${rm[@]}" --models orientation,detector,classifier,yolo --modes auto,candidate \
      --timeout 110 --out "$out/a.json" 2>&1 | tail -40 ;;
  b)  # the recogniser both ways in auto, its candidates bounded; VAD; candy; ultraface
    "${rm[@]}" --models recogniser --modes auto --timeout 150 --out "$out/b1.json" 2>&1 | tail -12
    "${rm[@]}" --models recogniser --modes auto --timeout 150 \
      --extra "--strategy sensitivity+minimize" --out "$out/b2.json" 2>&1 | tail -12
    "${rm[@]}" --models candy,ultraface,vad --modes auto,candidate --timeout 60 \
      --out "$out/b3.json" 2>&1 | tail -24 ;;
  c)  # the recogniser on candidates, bounded; four evaluators on the GPU
    "${rm[@]}" --models recogniser,classifier --modes candidate --timeout 90 \
      --out "$out/c1.json" 2>&1 | tail -12
    "${rm[@]}" --models orientation --modes auto,candidate --timeout 90 \
      --extra "--workers-per-gpu 4" --out "$out/c2.json" 2>&1 | tail -12 ;;
  lanes)  # candidates one at a time against several at once (a worker's lanes)
    timeout 400 python bench/candidate_lanes.py --dir bench/models --lanes 1,4,8 --plans 8 \
      orientation detector classifier recogniser candy ultraface yolo vad 2>&1 | tail -30 ;;
  d)  # both modes with lanes and the graph/shape fixes: the CNNs that lost
    "${rm[@]}" --models orientation,detector,classifier --modes auto,candidate \
      --timeout 85 --out "$out/d.json" 2>&1 | tail -30 ;;
  e)  # candy and the recogniser, both modes
    "${rm[@]}" --models candy,recogniser --modes auto,candidate --timeout 120 \
      --out "$out/e.json" 2>&1 | tail -30 ;;
  lat)  # the latency objective against the fewest-layers answer (issue 27), auto
    "${rm[@]}" --models orientation,classifier,candy,ultraface,yolo --modes auto \
      --extra "--objective latency" --timeout 100 --out "$out/lat.json" 2>&1 | tail -30 ;;
  f)  # removals judged on the answer's own switchboard: both modes, the CNNs that lost
    "${rm[@]}" --models orientation,classifier,detector --modes auto,candidate \
      --timeout 85 --out "$out/f.json" 2>&1 | tail -30 ;;
  g)  # candy both ways, the recogniser in auto, the latency objective on two CNNs
    "${rm[@]}" --models candy --modes auto,candidate --timeout 60 --out "$out/g1.json" \
      2>&1 | tail -12
    "${rm[@]}" --models recogniser --modes auto --timeout 150 --out "$out/g2.json" 2>&1 \
      | tail -12
    "${rm[@]}" --models classifier,orientation --modes auto --extra "--objective latency" \
      --timeout 100 --out "$out/g3.json" 2>&1 | tail -20 ;;
  h)  # the recogniser's sensitivity scan (issue 24: 2 s of search); latency on two more
    "${rm[@]}" --models recogniser --modes auto --extra "--strategy sensitivity" \
      --timeout 120 --out "$out/h1.json" 2>&1 | tail -12
    "${rm[@]}" --models ultraface,yolo,detector --modes auto --extra "--objective latency" \
      --timeout 100 --out "$out/h2.json" 2>&1 | tail -20 ;;
  build)  # each step of a switchboard's preparation, alone (no Ray, no candidates beside)
    timeout 100 python bench/switch_build.py --dir bench/models --device cuda \
      orientation 2>&1 | tail -4 ;;
  i)  # auto after the answer's own switchboard minimizes (phase f's candidates: > 85 s)
    "${rm[@]}" --models classifier,detector --modes auto --timeout 90 \
      --out "$out/i.json" 2>&1 | tail -16 ;;
esac
