"""A job's tokenized-data cache kept on persistent storage, used on the job's own disk.

    python -m lightning_app.data_cache pull STORAGE_DIR LOCAL_DIR --stages 1 2  # before the fit
    python -m lightning_app.data_cache push LOCAL_DIR STORAGE_DIR               # after it

datamodules.prepare builds each cache entry (a folder `stage<N>-<key>`) in a temporary folder and
renames it into place, which an S3-style mount cannot do atomically; so a job prepares into its
local scratch, and its stage's complete entries travel to and from storage as checkpoint items
(lightning_app.checkpoints: copied, then marked complete with every file's size and sha256), so a
later job (the next attempt, the evaluation, a rerun) finds the corpus tokenized instead of
spending up to an hour on it again. An entry is never renamed on the mount.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable
from pathlib import Path

from lightning_app.checkpoints import complete_items, fetch, publish

COMPLETE = "report.json"  # datamodules.prepare writes it last: an entry without it is unfinished
ENTRY = re.compile(r"stage[0-9]+-[0-9a-f]+")  # DataSettings.cache_key; a staging folder adds a suffix


def pull(remote_dir: Path, local_dir: Path, stages: Iterable[int]) -> list[str]:
    """Fetch the complete entries of `stages` that are on storage and not on this disk."""
    prefixes = tuple(f"stage{stage}-" for stage in stages)
    names = []
    for item in complete_items(remote_dir):
        if item.name.startswith(prefixes) and not (local_dir / item.name / COMPLETE).is_file():
            fetch(item, local_dir / item.name)
            names.append(item.name)
    return names


def push(local_dir: Path, remote_dir: Path) -> list[str]:
    """Publish the finished local entries that storage does not hold yet (entries never change:
    their name is the hash of everything that made them)."""
    stored = {item.name for item in complete_items(remote_dir)}
    names = []
    for entry in sorted(local_dir.iterdir()) if local_dir.is_dir() else ():
        if ENTRY.fullmatch(entry.name) and (entry / COMPLETE).is_file() and entry.name not in stored:
            publish(entry, remote_dir / entry.name)
            names.append(entry.name)
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lightning_app.data_cache", description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("action", choices=["pull", "push"])
    parser.add_argument("source", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--stages", type=int, nargs="+", help="pull: the stages whose entries to fetch")
    args = parser.parse_args(argv)
    if args.action == "pull" and not args.stages:
        parser.error("pull needs --stages")
    names = pull(args.source, args.dest, args.stages) if args.action == "pull" else push(args.source, args.dest)
    print(f"[data_cache] {args.action}: {', '.join(names) or 'nothing'} ({args.source} -> {args.dest})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
