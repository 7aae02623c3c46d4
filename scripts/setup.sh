#!/usr/bin/env bash
# Build (or update) a paralab virtual environment, reproducibly.
#
# Usage: scripts/setup.sh [--venv DIR] [--extras LIST] [--python PY] [--relock]
#   --venv DIR     virtual environment to create/update (default: .venv in the repo)
#   --extras LIST  comma-separated extras of pyproject.toml, e.g. all,dev or
#                  quantum,continual (default: all,dev,bench; "none" for the core only)
#   --python PY    interpreter used to create the venv (default: python3.11, else python3)
#   --wheel FILE   install this built paralab wheel instead of the editable checkout
#                  (CI checks the wheel this way: a fresh venv, --extras none)
#   --relock       regenerate the lock section of constraints.txt: DIR must not exist
#                  yet; installs with only the hand-written pins, then rewrites the lock
#                  from `pip freeze` of that fresh venv.
#
# Every pip call passes `-c constraints.txt` (and `--build-constraint` once pip is
# new enough), so all pins live in that one file. Steps, each idempotent:
#   1. create the venv if missing, 2. install the pinned pip,
#   3. install torch + torchvision FIRST (unpinned, pip would pick another, CUDA,
#      build; later installs must find them already satisfied),
#   4. for the fewshot/all extras: build learn2learn 0.2.0 into a wheel
#      (scripts/build_learn2learn.sh, cached in .cache/wheels/) and install it, so the
#      extra's `learn2learn` requirement is already satisfied and pip never tries the
#      broken sdist,
#   5. pip install -e ".[EXTRAS]",
#   6. check that torch was not swapped and that `pip check` is clean.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONSTRAINTS="$ROOT/constraints.txt"
LOCK_MARKER="# ---- lock ----"
VENV="$ROOT/.venv"
EXTRAS="all,dev,bench"
PY=""
RELOCK=0
WHEEL=""

while [[ $# -gt 0 ]]; do
  case "$1" in
    --venv) VENV="$2"; shift 2 ;;
    --venv=*) VENV="${1#*=}"; shift ;;
    --extras) EXTRAS="$2"; shift 2 ;;
    --extras=*) EXTRAS="${1#*=}"; shift ;;
    --python) PY="$2"; shift 2 ;;
    --python=*) PY="${1#*=}"; shift ;;
    --relock) RELOCK=1; shift ;;
    --wheel) WHEEL="$2"; shift 2 ;;
    --wheel=*) WHEEL="${1#*=}"; shift ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

# Relative --venv paths are relative to where the script was called from.
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac
EXTRAS="${EXTRAS// /}"
[[ "$EXTRAS" == "none" ]] && EXTRAS=""

T0=$SECONDS
step() { echo; echo "==> [setup +$((SECONDS - T0))s] $*"; }
die() { echo "setup.sh: ERROR: $*" >&2; exit 1; }

[[ -f "$CONSTRAINTS" ]] || die "missing $CONSTRAINTS"
[[ -f "$ROOT/pyproject.toml" ]] || die "missing $ROOT/pyproject.toml"

CONSTRAINT_FILE="$CONSTRAINTS"
if [[ $RELOCK -eq 1 ]]; then
  [[ -e "$VENV" ]] && die "--relock needs a fresh venv, but $VENV exists (pass --venv /tmp/somewhere-new)"
  # Only the hand-written pins (everything above the lock marker).
  CONSTRAINT_FILE="$(mktemp "${TMPDIR:-/tmp}/paralab-pins.XXXXXX.txt")"
  sed "/^$LOCK_MARKER/,\$d" "$CONSTRAINTS" > "$CONSTRAINT_FILE"
fi

pin_of() { grep -iE "^$1==" "$CONSTRAINTS" | head -n1 | cut -d= -f3 | tr -d '[:space:]'; }

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_PROGRESS_BAR=off
# Hide the "Location 'file:///opt/...' is ignored" noise some machines' pip config
# produces, keep everything else; the pipeline keeps pip's exit status.
pip_() {
  "$VENV/bin/python" -m pip "$@" 2>&1 | { grep -v "^WARNING: Location 'file://.*' is ignored" || true; }
}

echo "paralab setup: repo=$ROOT venv=$VENV extras=${EXTRAS:-<none>}"

# 1. venv --------------------------------------------------------------------
if [[ -x "$VENV/bin/python" ]]; then
  step "venv exists: $VENV ($("$VENV/bin/python" -V 2>&1))"
else
  if [[ -z "$PY" ]]; then
    if command -v python3.11 >/dev/null 2>&1; then PY=python3.11; else PY=python3; fi
  fi
  step "creating venv $VENV with $PY ($("$PY" -V 2>&1))"
  "$PY" -m venv "$VENV"
fi
PYVER="$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [[ "$PYVER" != "3.11" ]]; then
  echo "setup.sh: WARNING: venv Python is $PYVER; constraints.txt is locked for 3.11" >&2
fi

# 2. pip -----------------------------------------------------------------------
step "installing pinned pip ($(pin_of pip))"
pip_ install -c "$CONSTRAINT_FILE" --upgrade pip
PIP_C=(-c "$CONSTRAINT_FILE" --build-constraint "$CONSTRAINT_FILE")

# 3. torch first -----------------------------------------------------------------
TORCH_V="$(pin_of torch)"; TV_V="$(pin_of torchvision)"
[[ -n "$TORCH_V" && -n "$TV_V" ]] || die "constraints.txt must pin torch and torchvision"
if [[ -z "$EXTRAS" && $RELOCK -eq 0 ]]; then
  # The core alone needs no torchvision: the CPU-only torch on the `# core-torch==` line of
  # constraints.txt serves it (0.8 GB instead of the 5.6 GB CUDA pair). The other pins still
  # apply; the torch/torchvision ones are dropped from this path's constraint file.
  TORCH_V="$(grep -E '^# core-torch==' "$CONSTRAINTS" | head -n1 | cut -d= -f3 | tr -d '[:space:]')"
  [[ -n "$TORCH_V" ]] || die "constraints.txt has no '# core-torch==VERSION' line"
  TV_V=""
  CONSTRAINT_FILE="$(mktemp "${TMPDIR:-/tmp}/paralab-core-pins.XXXXXX.txt")"
  grep -viE '^(torch|torchvision)==' "$CONSTRAINTS" > "$CONSTRAINT_FILE"
  PIP_C=(-c "$CONSTRAINT_FILE" --build-constraint "$CONSTRAINT_FILE")
  step "installing the CPU-only torch==$TORCH_V first (core only: no torchvision)"
  pip_ install "${PIP_C[@]}" "torch==$TORCH_V"
else
  step "installing torch==$TORCH_V torchvision==$TV_V first"
  pip_ install "${PIP_C[@]}" "torch==$TORCH_V" "torchvision==$TV_V"
fi

torch_versions() {
  "$VENV/bin/python" - <<'PY'
from importlib.metadata import PackageNotFoundError, version
try:
    vision = version("torchvision").split("+")[0]
except PackageNotFoundError:
    vision = ""
print(version("torch").split("+")[0], vision)
PY
}
check_torch() {
  local got
  got="$(torch_versions)"
  [[ "$got" == "$TORCH_V $TV_V" ]] \
    || die "torch/torchvision were swapped: have '$got', want '$TORCH_V ${TV_V:-(none)}' (after: $1)"
  echo "torch check ok after $1: torch $TORCH_V, torchvision ${TV_V:-(none)}"
}
check_torch "torch install"

# 4. learn2learn wheel -----------------------------------------------------------
case ",$EXTRAS," in
  *,all,*|*,fewshot,*)
    step "learn2learn 0.2.0: build (or reuse cached) Python-3.11 wheel"
    L2L_WHEEL="$(bash "$ROOT/scripts/build_learn2learn.sh" --python "$VENV/bin/python")"
    # Same name and version already installed -> pip leaves it ("already installed
    # with the same version as the provided wheel").
    step "installing $(basename "$L2L_WHEEL")"
    pip_ install "${PIP_C[@]}" "$L2L_WHEEL"
    check_torch "learn2learn install"
    ;;
esac

# 5. the project -----------------------------------------------------------------
if [[ -n "$WHEEL" ]]; then
  [[ -f "$WHEEL" ]] || die "--wheel $WHEEL: no such file"
  TARGET="$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL")"
  [[ -n "$EXTRAS" ]] && TARGET="paralab[$EXTRAS] @ file://$TARGET"
  step "pip install \"$TARGET\""
  pip_ install "${PIP_C[@]}" "$TARGET"
else
  TARGET="$ROOT"
  [[ -n "$EXTRAS" ]] && TARGET="$ROOT[$EXTRAS]"
  step "pip install -e \"$TARGET\""
  pip_ install "${PIP_C[@]}" -e "$TARGET"
fi
check_torch "project install"

# 6. checks ----------------------------------------------------------------------
step "pip check"
pip_ check

if [[ $RELOCK -eq 1 ]]; then
  step "rewriting the lock section of $CONSTRAINTS"
  new="$(mktemp "${TMPDIR:-/tmp}/paralab-constraints.XXXXXX.txt")"
  {
    cat "$CONSTRAINT_FILE"
    echo "$LOCK_MARKER generated by \`scripts/setup.sh --relock --venv NEW_DIR --extras $EXTRAS\`;"
    echo "# do not edit below by hand: change a pin above, then relock."
    "$VENV/bin/python" -m pip freeze --exclude-editable 2>/dev/null \
      | grep -v ' @ ' \
      | "$VENV/bin/python" -c '
import re, sys
head = {re.split(r"[=<>!~ ;\[]", l.strip(), maxsplit=1)[0].lower().replace("_", "-")
        for l in open(sys.argv[1]) if l.strip() and not l.startswith("#")}
for line in sorted(sys.stdin, key=str.lower):
    name = line.split("==")[0].strip().lower().replace("_", "-")
    if name and name not in head:
        sys.stdout.write(line)
' "$CONSTRAINT_FILE"
  } > "$new"
  mv "$new" "$CONSTRAINTS"
  rm -f "$CONSTRAINT_FILE"
  echo "wrote $CONSTRAINTS ($(grep -c '==' "$CONSTRAINTS") pins)"
fi

step "done in $((SECONDS - T0))s: $VENV (python $PYVER, extras: ${EXTRAS:-none})"
echo "activate with: source ${VENV#$PWD/}/bin/activate"
