#!/usr/bin/env bash
# Sets up a Lightning Studio for this project (.lightning_studio/on_start.sh runs it at every start;
# it is safe to run again by hand): installs the project with its GPU extra, flash-attn only from a
# prebuilt wheel that matches torch/CUDA/Python (never a source build), writes the environment
# defaults of .lightning/jobs.yaml for Studio shells, and prints what GPU it found.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PIP="${PIP:-python -m pip}"
ENV_FILE="${THERAPEUTIC_MOE_ENV_FILE:-$HOME/.therapeutic-moe.env}"

echo "[setup] installing $REPO with the gpu extra (flash-attn apart)"
mapfile -t extras < <(python -m lightning_app.studio_env gpu-extras)
$PIP install -q -e . "${extras[@]}"

if python -c "import flash_attn" 2>/dev/null; then
    echo "[setup] flash-attn already installed"
else
    wheel="$(python -m lightning_app.studio_env flash-attn-wheel)"
    if [ -z "$wheel" ]; then
        echo "[setup] torch has no CUDA build: no flash-attn, the model uses SDPA"
    elif $PIP install -q --no-deps "$wheel"; then
        echo "[setup] flash-attn installed from $wheel"
    else
        echo "[setup] no prebuilt flash-attn wheel for this torch/CUDA/Python ($wheel): the model uses SDPA"
    fi
fi

python -m lightning_app.studio_env profile > "$ENV_FILE"
grep -qsF "$ENV_FILE" "$HOME/.bashrc" || echo "[ -f $ENV_FILE ] && . $ENV_FILE" >> "$HOME/.bashrc"
echo "[setup] environment defaults in $ENV_FILE (sourced by ~/.bashrc)"

# The start-up hook in the Studio's home (Studios run ~/.lightning_studio/on_start.sh, not this
# checkout's): added once, so that a checkout anywhere in the Studio is set up at every start.
HOOK="$HOME/.lightning_studio/on_start.sh"
HOOK_LINE="bash \"$REPO/.lightning/setup.sh\"  # therapeutic-moe"
if [ "$(cd "$(dirname "$HOOK")" 2>/dev/null && pwd)" = "$REPO/.lightning_studio" ]; then
    echo "[setup] start-up hook: this checkout is the Studio's home"
elif grep -qsF "$HOOK_LINE" "$HOOK"; then
    echo "[setup] start-up hook: already in $HOOK"
else
    mkdir -p "$(dirname "$HOOK")"
    [ -s "$HOOK" ] || echo "#!/usr/bin/env bash" > "$HOOK"
    echo "$HOOK_LINE" >> "$HOOK"
    echo "[setup] start-up hook: added to $HOOK"
fi

python -m lightning_app.studio_env report | sed 's/^/[setup] /'
