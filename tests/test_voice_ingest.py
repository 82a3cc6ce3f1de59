"""Reading and cleaning each transcript format, and skipping files that are not transcripts."""

import json
from collections import Counter
from pathlib import Path

from datamodules.voice.clean import merge_cues, remove_stutters, strip_markup
from datamodules.voice.ingest import lecture_id_of, read_transcript, read_transcripts

SAMPLES = Path(__file__).parents[1] / "datamodules" / "voice" / "samples"


def test_rolling_auto_caption_vtt_loses_timing_tags_and_roll_up_repeats():
    raw = (SAMPLES / "shame-and-the-inner-critic.en.vtt").read_text()
    assert "<c>" in raw and "[Music]" in raw and raw.count("so today i i want to talk") == 2
    transcript = read_transcript(SAMPLES / "shame-and-the-inner-critic.en.vtt")
    assert transcript.lecture_id == "shame-and-the-inner-critic"
    text = transcript.text
    assert text.startswith("so today i want to talk about shame and the inner critic and i want to start")
    assert text.endswith("because you're no longer alone with it")
    for leftover in ("<", ">", "[", "Music", "-->", "00:"):
        assert leftover not in text
    # every cue repeats the previous line: none of that survives. Each spoken word is on exactly one
    # timed line (`word<00:..><c> word</c>`); the stutters "i i" are the few words fewer.
    spoken = sum(len(strip_markup(line).split()) for line in raw.splitlines() if "<c>" in line)
    assert spoken - 5 <= len(text.split()) < spoken and 1465 <= len(text.split()) <= 1475


def test_srt_keeps_punctuation_and_drops_tags():
    text = read_transcript(SAMPLES / "people-pleasing.srt").text
    assert text.startswith("So let's talk about people pleasing. Why do we say yes when everything inside us")
    assert "It's a survival strategy." in text
    assert "<i>" not in text and "[Applause]" not in text and "-->" not in text


def test_youtube_json_export_unescapes_entities_and_keeps_content_word_repeats():
    raw = json.loads((SAMPLES / "attachment-and-safety.json").read_text())
    assert {"text", "start", "duration"} <= set(raw[1]) and "&#39;" in json.dumps(raw)
    text = read_transcript(SAMPLES / "attachment-and-safety.json").text
    assert "you'll have an accent" in text and "&#" not in text and "[Music]" not in text
    assert "talk about attachment attachment is the bond" in text  # a sentence boundary, not a stutter
    assert len(text.split()) == sum(len(s["text"].split()) for s in raw[1:])  # every spoken word, once


def test_txt_title_line_and_stutter():
    transcript = read_transcript(SAMPLES / "healing-is-not-linear.txt")
    assert transcript.title == "Healing Is Not Linear"
    assert transcript.text.startswith("Today I want to talk about")
    assert "Why does it feel like I'm going backwards?" in transcript.text


def test_cleaning_rules():
    assert strip_markup("<00:00:01.820><c> today</c> [Applause] &amp; ♪ >> 00:01:02 ok") == "today & ok"
    assert remove_stutters("I I I think it was it was the the end") == "I think it was the end"
    assert remove_stutters("No. No. I said no.") == "No. No. I said no."
    assert merge_cues(["so today we", "so today we\ntalk about", "talk about", "shame"]) == (
        "so today we talk about shame"
    )
    assert lecture_id_of(Path("abc.en.vtt")) == "abc" and lecture_id_of(Path("abc.info.json")) == "abc"
    assert lecture_id_of(Path("my-talk.txt")) == "my-talk"


def test_empty_binary_wrongly_encoded_and_malformed_files_are_skipped_and_reported(tmp_path):
    (tmp_path / "nested").mkdir()
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.srt").write_text("   \n\n")
    (tmp_path / "binary.vtt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (tmp_path / "nested" / "latin.txt").write_bytes("caf\xe9 na\xefve r\xe9sum\xe9 talk".encode("cp1252"))
    (tmp_path / "mojibake.txt").write_text("cafÃ© naÃ¯ve rÃ©sumÃ© it’s â€œquotedâ€ text")
    (tmp_path / "wrong.json").write_text(json.dumps({"foo": 1}))
    (tmp_path / "broken.json").write_text('[{"text": ')
    (tmp_path / "tags-only.vtt").write_text("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n[Music]\n")
    (tmp_path / "talk.srt").write_text("1\n00:00:00,000 --> 00:00:02,000\nHello there, friends.\n")
    (tmp_path / "talk.en.vtt").write_text("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nhello there\n")
    (tmp_path / "talk.info.json").write_text(json.dumps({"title": "A Talk", "id": "talk"}))
    (tmp_path / "utf16.txt").write_text("Speech saved as UTF-16.", encoding="utf-16")
    (tmp_path / "notes.md").write_text("not a transcript")

    transcripts, report = read_transcripts(tmp_path)

    assert [(t.lecture_id, t.title, t.text) for t in transcripts] == [
        ("talk", "A Talk", "Hello there, friends."),
        ("utf16", None, "Speech saved as UTF-16."),
    ]
    assert report.read == 2 and report.files == 11
    assert report.skipped == Counter(
        {"empty": 2, "no speech": 1, "malformed": 2, "encoding": 2, "binary": 1, "duplicate lecture": 1}
    )
    # every file is listed with what happened to it: nothing is passed over in silence
    listing = {Path(row["path"]).relative_to(tmp_path).as_posix(): row for row in report.listing}
    assert len(listing) == len(report.listing) == 13
    assert {name for name, row in listing.items() if row["status"] == "read"} == {"talk.srt", "utf16.txt"}
    assert {name: row["reason"] for name, row in listing.items() if row["status"] == "skipped"} == {
        "empty.txt": "empty",
        "blank.srt": "empty",
        "binary.vtt": "binary",
        "nested/latin.txt": "encoding",
        "mojibake.txt": "encoding",
        "wrong.json": "malformed",
        "broken.json": "malformed",
        "tags-only.vtt": "no speech",
        "talk.en.vtt": "duplicate lecture",
    }
    assert {name for name, row in listing.items() if row["status"] == "ignored"} == {"notes.md", "talk.info.json"}
    assert "is not one of .json, .srt, .vtt, .txt" in listing["notes.md"]["detail"]
    joined = "\n".join(report.examples)
    assert "latin.txt: encoding: not UTF-8" in joined and "iconv" in joined
    assert "binary.vtt: binary" in joined and "wrong.json: malformed: expected a list" in joined
    assert "talk.en.vtt: lecture talk already read from talk.srt" in joined
