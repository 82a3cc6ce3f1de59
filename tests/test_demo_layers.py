"""The demo's config layers compose: a later layer never resets what an earlier one set, nor repeats it."""

from pathlib import Path

import yaml

from stages.fit import parse_stage_config

REPO = Path(__file__).resolve().parents[1]
PIPELINE = REPO / "lightning_app" / "demo_pipeline.yaml"


def leaves(tree: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out |= leaves(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_no_demo_layer_undoes_or_repeats_another():
    problems = []
    for step in yaml.safe_load(PIPELINE.read_text())["stages"]:
        stage, *layers = step["config"]
        assert len(layers) >= 2, "the README demo layers a model over the CPU demo"
        before = parse_stage_config([str(REPO / stage)])  # the stage alone: what the first layer changed
        written = [leaves(yaml.safe_load((REPO / layer).read_text()) or {}) for layer in layers]
        for i, earlier in enumerate(written):
            for later, name in zip(written[i + 1 :], layers[i + 1 :]):
                for key in sorted(earlier.keys() & later.keys()):
                    if later[key] == earlier[key]:
                        problems.append(f"{name} repeats {layers[i]}'s {key}: {later[key]!r}")
                    elif later[key] == before.get(key, object()):
                        problems.append(f"{name} resets {key} to {stage}'s {later[key]!r}, undoing {layers[i]}")
    assert problems == []
