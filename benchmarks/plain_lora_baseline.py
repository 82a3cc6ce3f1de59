"""The mixture against a plain LoRA of the same budget on the CPU demo: the demo's first stage(s) through
`lightning_app.pipeline --local --baseline-lora`, in a folder of their own.

    python -m benchmarks.plain_lora_baseline [--stages 1] [--out outputs/plain_lora_baseline] [--base-model tiny]

The demo's own configs (lightning_app/demo_pipeline.yaml: stages/demo.yaml, stages/demo_smollm2.yaml, the
demo's evaluation settings), only the output folders and the data cache moved under --out. Prints each
stage's line from its report (held-out loss of the mixture, the plain LoRA and the base model, the reply
comparison), then one JSON object: those figures, the gate's decision and the wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

from lightning_app import pipeline

DEMO = Path(__file__).resolve().parent.parent / "lightning_app" / "demo_pipeline.yaml"


def demo_pipeline(out: Path, stages: int, base_model: str | None) -> Path:
    """The demo's pipeline YAML limited to its first `stages`, writing under `out`."""
    config = yaml.safe_load(DEMO.read_text())
    layer = {"data": {"cache_dir": str(out / "cache")}}
    if base_model:
        layer["model"] = {"base_model": base_model}
    (out / "layer.yaml").write_text(yaml.safe_dump(layer))
    config |= {"output_root": str(out / "runs"), "reports": str(out / "reports"), "stages": config["stages"][:stages]}
    for step in config["stages"]:
        step["config"].append(str(out / "layer.yaml"))
    path = out / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.plain_lora_baseline", description=__doc__.split("\n")[0])
    parser.add_argument("--stages", type=int, default=1, choices=(1, 2, 3), help="the demo's first N stages")
    parser.add_argument("--out", type=Path, default=Path("outputs/plain_lora_baseline"))
    parser.add_argument("--base-model", help="instead of the demo's smollm2, e.g. tiny (plumbing only)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    config = demo_pipeline(args.out.resolve(), args.stages, args.base_model)
    started = time.perf_counter()
    code = pipeline.main(["--config", str(config), "--local", "--baseline-lora"])
    seconds = time.perf_counter() - started
    stages = {}
    for path in sorted((args.out / "reports").glob("*/report.json")):
        folder, report = path.parent, json.loads(path.read_text())
        weighed = report.get("plain_lora") or {}
        print(f"{folder.name}: {weighed.get('summary', 'no plain LoRA in the report')}")
        stages[folder.name] = {"decision": report["decision"], **{k: weighed.get(k) for k in (
            "heldout_loss", "loss_ratio", "mean_relevance", "replies_verdict")}}
        replies = weighed.get("replies") or {}
        stages[folder.name]["replies"] = {k: replies.get(k) for k in ("wins", "losses", "ties", "share_won")}
    print(json.dumps({"benchmark": "plain_lora_baseline", "exit_code": code, "wall_s": round(seconds, 1), "stages": stages}))
    return code


if __name__ == "__main__":
    sys.exit(main())
