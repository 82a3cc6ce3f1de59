"""`checkpoint-final/`: what a finished stage hands to evaluation, export and the next stage.

The best-by-val_loss adapter in the moe/ adapter format (with the routing each domain received on
the validation data, for export with observed gates), the tokenizer, the resolved config without
secrets, and metrics.json. Written into a temporary folder and renamed into place, so a reader never
sees half of it.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch import LightningDataModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, Timer
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason

from moe.adapter_io import save_adapter
from moe.base_model import load_tokenizer
from moe.lightning_module import MoELoRAModule
from stages.callbacks import BestCheckpoint

SECRET_KEY = re.compile(r"(api_?key|secret|password|passwd|auth|(^|_)token$)", re.IGNORECASE)
REDACTED = "<redacted>"


def redacted_config(parser: Any, config: Any) -> str:
    """The resolved config as YAML with every secret-looking value replaced (secrets live in the
    environment; this catches one pasted into a YAML or on the command line by mistake)."""
    data = yaml.safe_load(parser.dump(config, skip_none=False, skip_link_targets=False))
    return yaml.safe_dump(_redact(data), sort_keys=False)


def _redact(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: (REDACTED if isinstance(k, str) and SECRET_KEY.search(k) and v is not None else _redact(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_redact(v) for v in node]
    return node


def stop_reason(trainer: Trainer) -> str:
    """Why the fit ended. Early stopping is read from the callback's own reason (its stopped_epoch
    stays 0 when it stops in the first epoch, as step-counted validation often does)."""
    for callback in trainer.callbacks:
        if isinstance(callback, EarlyStopping) and callback.stopping_reason != EarlyStoppingReason.NOT_STOPPED:
            return "early_stopping"
        remaining = callback.time_remaining() if isinstance(callback, Timer) else None
        if remaining is not None and remaining <= 0:
            return "max_time"
    if 0 < trainer.max_steps <= trainer.global_step:
        return "max_steps"
    return "max_epochs"


def best_checkpoint(best: ModelCheckpoint) -> str | None:
    """The best-by-val_loss checkpoint; None when validation never ran.

    A resumed run redoes every validation after its last.ckpt, so the best file its state names has
    been written again by the time the fit ends; a missing one is a bug, not something to guess around.
    """
    if not best.best_model_path:
        return None
    if not Path(best.best_model_path).is_file():
        raise FileNotFoundError(f"the best checkpoint {best.best_model_path} is missing")
    return best.best_model_path


def final_weights(
    trainer: Trainer, module: MoELoRAModule, datamodule: LightningDataModule, best: BestCheckpoint
) -> tuple[str | None, dict[str, float]]:
    """The weights checkpoint-final holds (a checkpoint path, None for the weights as training left
    them) and their validation metrics: the best validated checkpoint, unless the steps trained after
    the last validation (a run whose length is not a multiple of the validation interval) validate
    better, or validation never ran. Those steps are weighed, never dropped unseen."""
    def validate(ckpt_path: str | None) -> dict[str, float]:
        results = trainer.validate(module, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)
        return results[0] if results else {}  # an empty validation split gives no metrics

    best_path = best_checkpoint(best)
    if best_path is None or best.validated_step != trainer.global_step:
        metrics = validate(None)
        now, best_score = metrics.get(best.monitor), best.best_model_score
        if best_path is None or (now is not None and best_score is not None and now < float(best_score)):
            return None, metrics
    return best_path, validate(best_path)


def write_final(
    trainer: Trainer,
    module: MoELoRAModule,
    datamodule: LightningDataModule,
    best: BestCheckpoint,
    final_dir: Path,
    parser: Any,
    config: Any,
) -> None:
    """Validate the best weights (stages.final.final_weights) and write them."""
    reason = stop_reason(trainer)
    best_path, metrics = final_weights(trainer, module, datamodule, best)
    routing = module.observed_routing
    adapter = module.adapter_tensors()  # every rank: under FSDP this gathers the adapter's shards
    if not trainer.is_global_zero:
        return
    tmp = final_dir.with_name(f".{final_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    h = module.hparams
    save_adapter(
        adapter,
        tmp,
        module.moe_config,
        base_model=h.base_model,
        extra={"observed_gates": routing.get("observed_gates", {})},
    )
    load_tokenizer(h.base_model, trust_remote_code=h.trust_remote_code).save_pretrained(tmp)
    (tmp / "config.yaml").write_text(redacted_config(parser, config))
    summary = {
        "stop_reason": reason,
        "global_step": trainer.global_step,
        "epoch": trainer.current_epoch,
        # None: the weights as training left them (validation never ran, or they beat every validated step).
        "best_checkpoint": best_path,
        "val_loss": metrics.get("val_loss"),
        "val_ppl": metrics.get("val_ppl"),
        "schedule": asdict(module.schedule) if module.schedule else None,
        "expert_use_per_domain": routing.get("expert_use_per_domain", {}),
        "observed_gates": routing.get("observed_gates", {}),
    }
    (tmp / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    old = final_dir.with_name(f".{final_dir.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final_dir.exists():
        final_dir.rename(old)
    tmp.rename(final_dir)
    shutil.rmtree(old, ignore_errors=True)
    print(f"{final_dir}: val_loss {summary['val_loss']}, stopped by {reason} at step {trainer.global_step}")
