import random
from collections import Counter

import datasets
import pytest
import torch

from datamodules.packing import RowDataset, packing_efficiency, plan_rows
from moe.batch import IGNORE_INDEX, Collate
from moe.base_model import load_base_model

MAX = 64


def examples(lengths, seed=0):
    rng = random.Random(seed)
    rows = []
    for n, length in enumerate(lengths):
        ids = [rng.randrange(6, 2000) for _ in range(length)]
        labels = [IGNORE_INDEX if i < length // 2 else t for i, t in enumerate(ids)]
        rows.append({"input_ids": ids, "labels": labels, "domain_id": n % 4})
    return datasets.Dataset.from_list(rows)


def test_plan_fills_rows_with_whole_examples_and_loses_none():
    rng = random.Random(1)
    lengths = [rng.randrange(1, MAX + 1) for _ in range(500)]
    plan = plan_rows(lengths, MAX)
    assert sorted(i for row in plan for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= MAX for row in plan)
    assert plan == plan_rows(lengths, MAX)  # deterministic
    efficiency = packing_efficiency(lengths, plan, MAX)
    assert efficiency == sum(lengths) / (len(plan) * MAX)
    assert efficiency > 0.95  # best-fit decreasing on uniform lengths wastes little
    with pytest.raises(ValueError, match="example 0 has 65 tokens"):
        plan_rows([MAX + 1], MAX)


def test_packed_rows_follow_the_batch_contract():
    data = examples([30, 20, 10, 50])
    plan = plan_rows([len(x) for x in data["input_ids"]], MAX)
    rows = RowDataset(data, plan, MAX, pad_token_id=3)
    batch = Collate(pad_token_id=3)([rows[i] for i in range(len(rows))])
    assert set(batch) == {"input_ids", "labels", "position_ids", "domain_ids", "token_mask", "cu_seq_lens", "max_length"}
    assert batch["input_ids"].shape == (len(plan), MAX) and batch["token_mask"].dtype == torch.bool
    for r, row in enumerate(plan):
        real = sum(len(data[i]["input_ids"]) for i in row)
        assert batch["token_mask"][r].sum() == real
        expected_positions = [p for i in row for p in range(len(data[i]["input_ids"]))]
        assert batch["position_ids"][r, :real].tolist() == expected_positions
        assert batch["position_ids"][r, real:].tolist() == list(range(MAX - real))
        assert (batch["labels"][r, real:] == IGNORE_INDEX).all() and (
            batch["domain_ids"][r, real:] == -1
        ).all()
        assert batch["domain_ids"][r, :real].tolist() == [i % 4 for i in row for _ in data[i]["input_ids"]]
    # No token is lost or duplicated.
    packed = Counter(batch["input_ids"][batch["token_mask"]].tolist())
    assert packed == Counter(t for ids in data["input_ids"] for t in ids)


def test_padding_mode_pads_to_longest_with_attention_mask():
    data = examples([5, 9])
    rows = RowDataset(data, [[0], [1]], MAX, pad_token_id=3, packed=False)
    batch = Collate(pad_token_id=3, packed=False)([rows[0], rows[1]])
    assert batch["input_ids"].shape == (2, 9)
    assert batch["attention_mask"].tolist()[0] == [1] * 5 + [0] * 4
    assert batch["labels"][0, 5:].tolist() == [IGNORE_INDEX] * 4
    assert batch["domain_ids"][0, 5:].tolist() == [-1] * 4


def test_packed_examples_get_exactly_their_own_logits_under_sdpa():
    model = load_base_model("tiny", dtype=torch.float32, attn_implementation="sdpa").eval()
    data = examples([23, 17, 9, 12, 30], seed=3)
    plan = plan_rows([len(x) for x in data["input_ids"]], MAX)
    assert any(len(row) > 1 for row in plan)
    rows = RowDataset(data, plan, MAX, pad_token_id=3)
    batch = Collate(pad_token_id=3)([rows[i] for i in range(len(rows))])
    with torch.no_grad():
        packed = model(
            input_ids=batch["input_ids"],
            position_ids=batch["position_ids"],
            attention_mask=None,
            use_cache=False,
        ).logits
        for r, row in enumerate(plan):
            offset = 0
            for i in row:
                ids = torch.tensor([data[i]["input_ids"]])
                alone = model(input_ids=ids, use_cache=False).logits[0]
                together = packed[r, offset : offset + ids.shape[1]]
                torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)
                offset += ids.shape[1]
        # The control: without restarting positions, later examples would see earlier ones.
        leaky = model(input_ids=batch["input_ids"], use_cache=False).logits
    r = next(r for r, row in enumerate(plan) if len(row) > 1)
    first = len(data[plan[r][0]]["input_ids"])
    assert not torch.allclose(leaky[r, first:], packed[r, first:], atol=1e-4)
