"""One LightningDataModule for every stage: its `data:` YAML section is exactly DataSettings'
__init__ (datamodules/prepare.py), and it adds only the Lightning hooks.

`prepare_data` runs `prepare` (build the cache once per node), `setup` loads the result and, at
fit, runs the template self-check; the loaders serve `Prepared.rows`. The train loader is
torchdata's StatefulDataLoader over a StatefulDistributedSampler: a seeded shuffle per epoch whose
position is saved in Lightning checkpoints, so a mid-epoch resume neither repeats nor skips rows.
"""

from __future__ import annotations

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader
from torchdata.stateful_dataloader.sampler import StatefulDistributedSampler

from datamodules.prepare import DataSettings, Prepared, prepare


class StageDataModule(DataSettings, LightningDataModule):
    """The data of one stage, for Lightning (arguments: DataSettings)."""

    prepared: Prepared | None = None

    def prepare_data(self) -> None:
        """Build the cache when it is missing (Lightning runs this once per node)."""
        prepare(self)

    def setup(self, stage: str | None = None) -> None:
        """Load the prepared data; at fit, run the template self-check on the first train
        conversations and the first of every source."""
        if self.prepared is not None:
            return
        self.prepared = prepare(self)
        if stage in (None, "fit") and self.template_check_examples:
            self.prepared.check_template(self.template_check_examples)

    def rows_per_epoch(self) -> int:
        """Train rows per epoch, for the model's schedule (read before the loaders exist)."""
        self.setup("fit")
        return self.prepared.rows_per_epoch()

    def train_dataloader(self) -> StatefulDataLoader:
        rows = self.prepared.rows("train")
        trainer = self.trainer
        sampler = StatefulDistributedSampler(
            rows,
            num_replicas=trainer.world_size if trainer else 1,
            rank=trainer.global_rank if trainer else 0,
            shuffle=True,
            seed=self.seed,
        )
        return StatefulDataLoader(
            rows,
            batch_size=self.micro_batch_size,
            sampler=sampler,
            collate_fn=self.prepared.collate(),
            num_workers=self.num_workers,
        )

    def _eval_loader(self, split: str) -> DataLoader:
        return DataLoader(
            self.prepared.rows(split),
            batch_size=self.micro_batch_size,
            collate_fn=self.prepared.collate(),
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")
