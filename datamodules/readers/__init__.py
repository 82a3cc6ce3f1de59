"""Schema name -> reader. Each module holds one schema family; `registry.yaml` names the schema."""

from datamodules.readers import cot, counsel_chat, generic, llama3, neuro_qa, priority, therapist_sft
from datamodules.readers.base import Reader

READERS: dict[str, Reader] = {
    **generic.READERS,
    **counsel_chat.READERS,
    **therapist_sft.READERS,
    **llama3.READERS,
    **neuro_qa.READERS,
    **priority.READERS,
    **cot.READERS,
}
