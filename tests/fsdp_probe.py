"""Two optimizer steps of MoELoRAModule on the tiny model (bf16 base, fp32 adapters), for
tests/test_lightning_distributed.py:

    python tests/fsdp_probe.py OUT_DIR 1      # one process, 2 accumulated micro-batches per step
    python tests/fsdp_probe.py OUT_DIR 2      # two CPU processes (gloo) under .lightning/strategies/fsdp.yaml

Either way a step sees micro-batches 2s and 2s+1 (the distributed sampler gives rank r the batches
r, r+2, ...); each process writes OUT_DIR/rank<R>.json with its micro-batch losses.
"""

import json
import sys
from pathlib import Path

import torch
import yaml
from jsonargparse import ArgumentParser
from lightning.pytorch import Callback, LightningDataModule, Trainer
from lightning.pytorch.strategies import Strategy
from torch.utils.data import DataLoader, Dataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from moe.batch import Collate
from moe.config import MoELoRAConfig
from moe.lightning_module import MoELoRAModule

SEQ, BATCHES = 32, 4


class Rows(Dataset):
    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(3, 250, (BATCHES, SEQ), generator=generator)

    def __len__(self) -> int:
        return BATCHES

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        positions = torch.arange(SEQ) % (SEQ // 2)  # two packed examples per row
        return {
            "input_ids": self.ids[i],
            "labels": self.ids[i],
            "position_ids": positions,
            "domain_ids": torch.full((SEQ,), i % 4),
            "token_mask": torch.ones(SEQ, dtype=torch.bool),
        }


class Data(LightningDataModule):
    micro_batch_size, max_seq_length = 1, SEQ

    def rows_per_epoch(self) -> int:  # what the module's schedule counts
        return len(Rows())

    def train_dataloader(self) -> DataLoader:
        return DataLoader(Rows(), batch_size=1, collate_fn=Collate(pad_token_id=0))


class Losses(Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def main(out_dir: str, devices: int) -> None:
    strategy: Strategy | str = "auto"
    if devices > 1:
        node = yaml.safe_load((ROOT / ".lightning" / "strategies" / "fsdp.yaml").read_text())["trainer"]["strategy"]
        parser = ArgumentParser(exit_on_error=False)
        parser.add_subclass_arguments(Strategy, "strategy")
        strategy = parser.instantiate_classes(parser.parse_object({"strategy": node})).strategy
    torch.manual_seed(0)
    module = MoELoRAModule(
        base_model="tiny", moe=MoELoRAConfig(dropout=0.0), dtype="bfloat16", warmup_steps=1, lr=1e-2,
        loss_chunk_tokens=16,
    )  # fmt: skip
    losses = Losses()
    trainer = Trainer(
        accelerator="cpu", devices=devices, strategy=strategy, precision="bf16-mixed", max_steps=2,
        accumulate_grad_batches=2 if devices == 1 else 1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
        callbacks=[losses], use_distributed_sampler=True,
    )  # fmt: skip
    trainer.fit(module, datamodule=Data())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{trainer.global_rank}.json").write_text(
        json.dumps({"losses": losses.losses, "world": trainer.world_size})
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
