"""Writes the one parquet sample, LLAMA3_Mental_Counseling_Data/data/train-00000-of-00001.parquet.

That source probably re-renders Amod's rows as Llama-3 prompt text, so this sample does exactly
that with the readable rows of the Amod sample (cross-source duplicates for dedup to find), plus
rows of its own (one hand-written, then one per topic of dialogue_parts.py, composed from client
details no other sample opens with) and one row without header tokens. Run from the repository root:
`python -m datamodules.samples.build_parquet`; a test checks the committed file matches it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from datamodules.samples.dialogue_parts import TOPICS

SAMPLES = Path(__file__).parent
AMOD = SAMPLES / "mental_health_counseling_conversations" / "combined_dataset.json"
OUT = SAMPLES / "LLAMA3_Mental_Counseling_Data" / "data" / "train-00000-of-00001.parquet"
SYSTEM = "You are a helpful mental health counselling assistant, please answer the mental health questions based on the patient's description."
OWN_ROW = (
    "I moved to a new city and I feel invisible.",
    "Moving can cut us off from everyone who knew us. What did a good day look like before the move?",
)


def llama3_text(context: str, response: str) -> str:
    return (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        f"{SYSTEM}<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
        f"{context}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        f"{response}<|eot_id|>"
    )


def table() -> pa.Table:
    pairs = []
    for line in AMOD.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("Context") and row.get("Response"):
            pairs.append((row["Context"], row["Response"]))
    own = [(t["details"][2], f"{t['reflections'][2]} {t['questions'][0]}") for t in TOPICS.values()]
    texts = [llama3_text(c, r) for c, r in [*pairs, OWN_ROW, *own]]
    texts.append("Counsellor notes without any chat markup.")
    return pa.table({"text": texts})


def build(out: Path = OUT) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table(), out)
    return out


if __name__ == "__main__":
    print(build())
