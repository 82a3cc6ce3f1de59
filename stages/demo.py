"""The three stages in order on CPU, offline, in a few minutes: `python -m stages.demo`.

Each stage is its own `python -m stages.fit --config stages/stageN.yaml --config stages/demo.yaml`
process, as each is its own job on Lightning AI; stage 2 and 3 start from the previous stage's
checkpoint-final. Extra arguments go to every stage (e.g. `--trainer.max_steps 4`). Run from the
repository root. Outputs: outputs/demo/therapeutic_moe_stage{1,2,3...}/.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "stages" / "demo.yaml"


def main(extra: list[str]) -> None:
    output_root = REPO / yaml.safe_load(DEMO.read_text())["run"]["output_root"]
    for stage in (1, 2, 3):
        config = REPO / "stages" / f"stage{stage}.yaml"
        stage_dir = output_root / yaml.safe_load(config.read_text())["run"]["name"]
        shutil.rmtree(stage_dir, ignore_errors=True)  # a demo starts fresh instead of resuming
        command = [sys.executable, "-m", "stages.fit", "--config", str(config), "--config", str(DEMO), *extra]
        print(f"== stage {stage}: {' '.join(command[1:])}", flush=True)
        if subprocess.run(command, cwd=REPO).returncode != 0:
            sys.exit(f"stage {stage} failed")
        metrics = json.loads((stage_dir / "checkpoint-final" / "metrics.json").read_text())
        final = stage_dir / "checkpoint-final"
        print(f"== stage {stage} done: val_loss {metrics['val_loss']}, {final}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
