"""Lecture transcripts into grounded synthetic conversations for stage 3 (the speaker's voice).

    python -m datamodules.voice build --transcripts DIR --out PATH --speaker NAME [--config voice.yaml]

Pipeline (datamodules/voice/build.py): ingest (every file listed) -> clean -> punctuate -> chunk ->
dedup -> style profile -> TF-IDF index of passages -> conversations on one worker pool (client turns
from personas by templates or a generator, journalled; each answered from the passage that matches
it, or with a safe reply to a risk disclosure) -> filters -> held-out lectures -> JSON files.
"""
