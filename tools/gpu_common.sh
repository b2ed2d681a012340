# Steps shared by the one-command GPU scripts (tools/gpu_table5.sh, tools/gpu_train_zoo.sh); sourced
# first; gpu_packages and the steps after it need PY, SITE, DSB, ZIP, DEVICE and gpu_results' STATUS.

# --rehearse (MODE=rehearse), nothing (MODE=gpu) or --help (the script's header, then exit 0).
gpu_mode() {
  MODE=gpu
  case "${1:-}" in
    "") ;;
    --rehearse) MODE=rehearse ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument '$1' (give --rehearse or nothing)" >&2; exit 2 ;;
  esac
}

# $PY (.venv/bin/python if present, else python3), $RUNS and $RESULTS made absolute, $STATUS opened
# with a dated line (appended: a rerun keeps the earlier command's account above its own), note() and fail().
gpu_results() {
  if [ -z "${PY:-}" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
  fi
  mkdir -p "$RUNS" "$RESULTS" || { echo "error: cannot create $RUNS or $RESULTS" >&2; exit 2; }
  RUNS=$(cd "$RUNS" && pwd) RESULTS=$(cd "$RESULTS" && pwd)
  STATUS="$RESULTS/status.txt"
  echo "----- $(date -u '+%Y-%m-%d %H:%M:%S UTC')" >>"$STATUS" || { echo "error: $RESULTS is not writable" >&2; exit 2; }
}
note() { echo "[$(printf '%4d' "$SECONDS") s] $*" | tee -a "$STATUS"; }
fail() { note "error: $*"; exit 2; }

# Detectron2 and its pure-Python needs from the wheels in .whl/ (into $SITE) when they are not
# importable: the GPU machine has torch but no Detectron2 (docs/results.md says how .whl/ is made).
gpu_packages() {
  local original=${PYTHONPATH:-}
  export PYTHONPATH="$PWD${original:+:$original}"
  if ! "$PY" -c "import detectron2, fvcore, pycocotools" 2>/dev/null; then
    ls .whl/*.whl >/dev/null 2>&1 || fail "Detectron2 is not importable by $PY and there is no .whl/ to install it from"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
      >>"$STATUS" 2>&1 || fail "installing .whl/*.whl into $SITE failed (above)"
    export PYTHONPATH="$PWD:$SITE${original:+:$original}"
    note "installed $(ls .whl/*.whl | wc -l) wheels from .whl/ into $SITE"
  fi
}

# $DSB if it holds a prepared DSB 2018 split (annotations/train.json), else prepared there from $ZIP.
gpu_data() {
  if [ ! -f "$DSB/annotations/train.json" ]; then
    [ -f "$ZIP" ] || fail "no prepared DSB 2018 at DSB=$DSB and no ZIP=$ZIP to prepare it from"
    "$PY" datasets/prepare_dsb2018.py --src "$ZIP" --out "$DSB" --no-progress >>"$STATUS" 2>&1 \
      || fail "datasets/prepare_dsb2018.py --src $ZIP --out $DSB failed (above)"
  fi
  note "data: $DSB ($(ls "$DSB/images" | wc -l) images)"
}

# The packages import, the configs ("$@") exist and $DEVICE is usable, or exit 2 before anything trains.
gpu_preflight() {
  "$PY" - "$DEVICE" "$@" >>"$STATUS" 2>&1 <<'PYEOF' || fail "preflight failed (above): nothing was trained"
import sys
import maskrcnnpp, detectron2, pycocotools, torch  # noqa: F401
from maskrcnnpp.config import resolve_config_path
device, configs = sys.argv[1], sys.argv[2:]
for name in configs:
    resolve_config_path(name)
if device == "cuda":
    assert torch.cuda.is_available(), "torch sees no CUDA device"
    print("preflight:", torch.__version__, torch.cuda.get_device_name(0), "detectron2", detectron2.__version__)
else:
    print("preflight:", torch.__version__, "cpu", "detectron2", detectron2.__version__)
PYEOF
}

# Each of the whole-number settings named ("$@") is >= 1, or exit 2.
gpu_check_counts() {
  local name value
  for name in "$@"; do
    value=${!name}
    if ! [[ "$value" =~ ^[0-9]+$ ]] || [ "$value" -lt 1 ]; then
      echo "error: $name must be a whole number >= 1, got '$value'" >&2; exit 2
    fi
  done
}
