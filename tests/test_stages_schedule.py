"""The learning-rate schedule follows the steps that will run: the plan, max_steps or the time cap."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from lightning.pytorch.callbacks import Timer

from moe.lightning_module import MoELoRAModule, Schedule


def planned(max_epochs=3, max_steps=-1, max_time_h=None, throughput=None, warmup=1000, batches=8000):
    """A stage of `batches` micro-batches per epoch, micro-batch 4 x 2048 tokens, accumulation 8."""
    module = MoELoRAModule(base_model="tiny", warmup_steps=warmup, throughput_tokens_per_s=throughput)
    module._trainer = SimpleNamespace(
        max_epochs=max_epochs,
        max_steps=max_steps,
        accumulate_grad_batches=8,
        world_size=1,
        limit_train_batches=1.0,
        callbacks=[Timer(timedelta(hours=max_time_h))] if max_time_h else [],
        datamodule=SimpleNamespace(rows_per_epoch=lambda: 4 * batches, micro_batch_size=4, max_seq_length=2048),
    )
    return module.plan_schedule()


def test_the_plan_runs_whole_when_nothing_cuts_it():
    assert planned() == Schedule(planned_steps=3000, total_steps=3000, warmup_steps=1000, cut_by=None)


def test_max_steps_cuts_the_horizon_and_warmup_keeps_its_share():
    assert planned(max_steps=300) == Schedule(3000, 300, 100, "max_steps")


def test_the_time_cap_at_the_measured_throughput_cuts_the_horizon():
    # 12 h x 6,000 tokens/s / 65,536 tokens per step = 3,955 steps of the plan's 3 x 2,000.
    schedule = planned(max_time_h=12, throughput=6000, batches=16000)
    assert schedule == Schedule(6000, 3955, 659, "max_time")
    assert "3955 optimizer steps (plan 6000, cut by max_time), linear warmup 659" in schedule.describe()


def test_lr_warms_up_linearly_then_decays_by_cosine_to_the_floor():
    schedule = Schedule(planned_steps=100, total_steps=100, warmup_steps=10, cut_by=None)
    factors = [schedule.lr_factor(step, min_lr_ratio=0.1) for step in range(101)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0) and factors[55] == pytest.approx(0.55)
    assert factors[100] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))


@pytest.mark.parametrize("rows, world, micro", [(10, 3, 2), (7, 1, 4), (16, 4, 4), (5, 8, 1)])
def test_batches_per_epoch_from_rows_match_the_train_loader(rows, world, micro):
    """The schedule counts Prepared's rows as the train loader's sampler and batcher split them."""
    from torchdata.stateful_dataloader import StatefulDataLoader
    from torchdata.stateful_dataloader.sampler import StatefulDistributedSampler

    module = MoELoRAModule(base_model="tiny")
    module._trainer = SimpleNamespace(
        world_size=world,
        limit_train_batches=1.0,
        datamodule=SimpleNamespace(rows_per_epoch=lambda: rows, micro_batch_size=micro),
    )
    data = list(range(rows))
    for rank in range(world):
        sampler = StatefulDistributedSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=0)
        assert module.train_batches_per_epoch() == len(StatefulDataLoader(data, batch_size=micro, sampler=sampler))
