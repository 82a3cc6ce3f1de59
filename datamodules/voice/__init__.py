"""Lecture transcripts into grounded synthetic conversations for stage 3 (the speaker's voice).

    python -m datamodules.voice build --transcripts DIR --out PATH --speaker NAME [--config voice.yaml]

Pipeline (datamodules/voice/build.py): ingest -> clean -> punctuate -> chunk -> dedup -> style profile ->
client turns from a generator (journalled) -> filters -> held-out lectures -> JSON files.
"""
