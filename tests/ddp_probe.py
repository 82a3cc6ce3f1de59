"""A callback for tests/test_lightning_distributed.py: what each DDP rank trained on and ended with."""

import hashlib
import json
from pathlib import Path

import torch
from lightning.pytorch import Callback


def weights_digest(module: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, param in sorted(module.named_parameters()):
        if param.requires_grad:
            digest.update(name.encode() + param.detach().to(torch.float32).numpy().tobytes())
    return digest.hexdigest()


class RankProbe(Callback):
    """Writes out_dir/rank<R>.json: world size, a hash of every train batch, a hash of the trainable weights."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.batches: list[str] = []

    def on_train_start(self, trainer, pl_module) -> None:
        self.initial = weights_digest(pl_module)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batches.append(hashlib.sha256(batch["input_ids"].numpy().tobytes()).hexdigest())

    def on_train_end(self, trainer, pl_module) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        record = {
            "world_size": trainer.world_size,
            "batches": self.batches,
            "initial": self.initial,
            "weights": weights_digest(pl_module),
            # the W&B run id this rank's logger was configured with (stages.fit.wandb_run_id)
            "wandb_id": next((lg._wandb_init.get("id") for lg in trainer.loggers if type(lg).__name__ == "WandbLogger"), None),
        }
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


class OneRankStops(Callback):
    """On rank `rank` only, at optimizer step `step`: a SIGTERM to that process ("sigterm"), or a NaN
    loss ("nan"). The other rank sees neither: the run must still stop on both, not hang."""

    def __init__(self, what: str, rank: int = 1, step: int = 1) -> None:
        self.what, self.rank, self.step = what, rank, step

    def setup(self, trainer, pl_module, stage) -> None:
        if self.what != "nan" or trainer.global_rank != self.rank:
            return
        weighted, step = pl_module._weighted, self.step

        def nan_here(lm, router):
            total, coef = weighted(lm, router)
            return (total * float("nan") if pl_module.global_step == step else total), coef

        pl_module._weighted = nan_here

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.what == "sigterm" and trainer.global_rank == self.rank and trainer.global_step == self.step:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGTERM)
            self.what = "done"
