"""Packed examples see only themselves under every attention implementation: eager, sdpa, and
flash_attention_2 through transformers' own dispatch (integrations.flash_attention ->
_flash_attention_forward), with only the CUDA kernel replaced by a reference varlen attention."""

from itertools import pairwise

import pytest
import torch
import transformers.modeling_flash_attention_utils as flash_utils

from benchmarks.gpu_checks import random_packed_batch
from moe.batch import IGNORE_INDEX, flatten_rows, needs_flattening
from moe.base_model import load_base_model

MAX = 48


def _attend(q, k, v, causal, scale):
    """[T, H, D] queries over [S, Hkv, D] keys (grouped-query heads repeated), as flash-attn does."""
    groups = q.shape[1] // k.shape[1]
    k, v = (t.repeat_interleave(groups, dim=1).transpose(0, 1) for t in (k, v))
    out = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(0, 1), k, v, is_causal=causal, scale=scale
    )
    return out.transpose(0, 1)


def reference_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                     softmax_scale=None, causal=False, window_size=(-1, -1), deterministic=False):  # fmt: skip
    """flash_attn_varlen_func's contract on [total, heads, dim]: each cu_seqlens segment attends only
    to itself. max_seqlen must be a Python int, as the CUDA kernel requires."""
    assert isinstance(max_seqlen_q, int) and isinstance(max_seqlen_k, int)
    assert cu_seqlens_q.dtype == torch.int32 and dropout_p == 0.0
    bounds = cu_seqlens_q.tolist()
    assert bounds[-1] == q.shape[0] and max(b - a for a, b in pairwise(bounds)) == max_seqlen_q
    return torch.cat(
        [_attend(q[a:b], k[a:b], v[a:b], causal, softmax_scale) for a, b in pairwise(bounds)]
    )


def reference_dense(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1),
                    deterministic=False):  # fmt: skip
    """flash_attn_func on [batch, seq, heads, dim]: each row one causal sequence."""
    return torch.stack([_attend(q[b], k[b], v[b], causal, softmax_scale) for b in range(q.shape[0])])


@pytest.fixture
def reference_flash_kernel(monkeypatch):
    """transformers' flash path exactly as on a GPU, except that the kernels it imports are ours."""
    kernels = (reference_dense, reference_varlen, None, flash_utils._pad_input, flash_utils._unpad_input)
    process = (flash_utils._lazy_define_process_function(reference_varlen), dict)
    calls = []

    def lazy_import(implementation, *args, **kwargs):
        calls.append(implementation)
        return kernels, process

    monkeypatch.setattr(flash_utils, "lazy_import_flash_attention", lazy_import)
    return calls


def packed_batch(seed: int = 3):
    lengths = [23, 17, 9, 12, 30, 7, 40]
    examples, plan, batch = random_packed_batch(lengths, MAX, token_ids=(6, 2000), pad_token_id=3, seed=seed)
    assert len(plan) > 1 and any(len(row) > 1 for row in plan)
    return examples, plan, batch


def tiny(implementation: str):
    model = load_base_model("tiny", dtype=torch.float32, attn_implementation="sdpa").eval()
    model.config._attn_implementation = implementation  # what from_pretrained(attn_implementation=) sets
    return model


def logits(model, batch):
    with torch.no_grad():
        return model(
            input_ids=batch["input_ids"],
            position_ids=batch["position_ids"],
            attention_mask=None,
            use_cache=False,
            **{key: batch[key] for key in ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")
               if key in batch},
        ).logits  # fmt: skip


@pytest.mark.parametrize("implementation", ["eager", "sdpa", "flash_attention_2"])
def test_every_packed_example_gets_exactly_its_solo_logits(implementation, reference_flash_kernel):
    examples, plan, batch = packed_batch()
    model = tiny(implementation)
    flattened = needs_flattening(implementation)
    assert flattened == (implementation == "flash_attention_2")
    model_batch = flatten_rows(batch) if flattened else batch
    packed = logits(model, model_batch).reshape(len(plan), MAX, -1)
    solo_model = tiny("sdpa")
    for r, row in enumerate(plan):
        offset = 0
        for i in row:
            ids = torch.tensor([examples[i]["input_ids"]])
            alone = logits(solo_model, {"input_ids": ids, "position_ids": torch.arange(ids.shape[1])[None]})[
                0
            ]
            torch.testing.assert_close(packed[r, offset : offset + ids.shape[1]], alone, rtol=1e-5, atol=1e-5)
            offset += ids.shape[1]
    # flash went through transformers' flash dispatch (the patched import), the others never did.
    assert bool(reference_flash_kernel) == flattened


def test_flash_on_unflattened_rows_leaks_across_examples(reference_flash_kernel):
    """The control: 4 packed rows handed to flash as they are run the dense causal kernel per row."""
    _, plan, batch = packed_batch()
    leaky = logits(tiny("flash_attention_2"), batch)
    isolated = logits(tiny("sdpa"), batch)
    r = next(r for r, row in enumerate(plan) if len(row) > 1)
    assert torch.allclose(leaky[r, :5], isolated[r, :5], atol=1e-5)  # the first example sees itself alone
    assert not torch.allclose(leaky[r, MAX // 2 :], isolated[r, MAX // 2 :], atol=1e-3)


def test_boundaries_mark_every_example_and_each_row_tail():
    _, plan, batch = packed_batch()
    starts = [0]
    for r, row in enumerate(plan):
        for n in (batch["position_ids"][r] == 0).nonzero().flatten().tolist()[1:]:
            starts.append(r * MAX + n)
        starts.append((r + 1) * MAX)
    assert batch["cu_seq_lens"].tolist() == starts and batch["cu_seq_lens"].dtype == torch.int32
    assert batch["max_length"] == max(b - a for a, b in pairwise(starts))
    flat = flatten_rows(batch)
    assert flat["input_ids"].shape == (1, len(plan) * MAX)
    assert flat["input_ids"].data_ptr() == batch["input_ids"].data_ptr()  # a view, no copy


def test_the_training_module_flattens_for_flash_and_gets_the_sdpa_losses(reference_flash_kernel):
    """MoELoRAModule._forward on one packed micro-batch: flash (flattened) and sdpa (rows) give the
    same LM loss and router losses; the chunked loss equals the unchunked one."""
    from moe.lightning_module import MoELoRAModule

    _, _, batch = packed_batch()
    batch["labels"] = batch["input_ids"].masked_fill(~batch["token_mask"], IGNORE_INDEX)
    batch["domain_ids"] = batch["domain_ids"].masked_fill(batch["token_mask"], 1)
    results = {}
    for implementation, chunk in (("sdpa", None), ("sdpa", 17), ("flash_attention_2", 17)):
        module = MoELoRAModule(base_model="tiny", loss_chunk_tokens=chunk)
        torch.manual_seed(0)  # the same adapter and router initialisation in every module
        module.configure_model()
        module.model.config._attn_implementation = implementation
        with torch.no_grad():
            out = module._forward(batch)
        results[implementation, chunk] = out
    flash, plain = results["flash_attention_2", 17], results["sdpa", None]
    assert flash.batch["input_ids"].shape == (1, batch["input_ids"].numel())
    for out in (results["sdpa", 17], flash):
        torch.testing.assert_close(out.lm_sum, plain.lm_sum, rtol=1e-5, atol=1e-4)
        assert out.tokens == plain.tokens
        for name in ("balance", "z", "domain"):
            torch.testing.assert_close(out.router[name], plain.router[name], rtol=1e-5, atol=1e-6)
