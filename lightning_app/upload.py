"""Copy exactly the files a stage reads to storage that outlives jobs, with a manifest.

    python -m lightning_app.upload --config stages/stage1.yaml --to /teamspace/s3_connections/NAME/data
    python -m lightning_app.upload --config stages/stage1.yaml --config stages/demo.yaml --to /tmp/demo-data

The destination mirrors the layout under the stage's `data_root`, so a job sets `data_root` to the
destination and reads the same relative paths. `upload-manifest.json` there lists every file with
its size and sha256; it grows across stages and is what the launch preflight trusts when the
storage is not visible from the submitting machine. Running the command again resumes: verified
files are skipped, a partly copied file is copied again whole.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from lightning_app.stage_config import data_settings, stage_files
from lightning_app.transfer import FileEntry, copy_file, describe, read_manifest, write_manifest
from stages.fit import parse_stage_config

MANIFEST_NAME = "upload-manifest.json"


def upload_files(data_root: Path, relative_paths: list[str], dest: Path) -> dict[str, FileEntry]:
    """Copy `data_root/p` to `dest/p` for each p, verified; returns the manifest entries of these files."""
    missing = [p for p in relative_paths if not (data_root / p).is_file()]
    if missing:
        raise FileNotFoundError(
            f"not found under data_root {data_root}: {', '.join(missing)}; "
            "put the files there or fix data_root in the stage YAML"
        )
    manifest_path = dest / MANIFEST_NAME
    manifest = read_manifest(manifest_path)
    uploaded: dict[str, FileEntry] = {}
    for rel in tqdm(relative_paths, desc=f"upload to {dest}", unit="file"):
        src, dst = data_root / rel, dest / rel
        entry = describe(src)
        done = manifest.get(rel) == entry and dst.is_file() and dst.stat().st_size == entry.size
        if not done:
            copy_file(src, dst, expected=entry)
            manifest[rel] = entry
            write_manifest(manifest_path, manifest)  # after every file: an interrupted run resumes here
        uploaded[rel] = entry
    return uploaded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lightning_app.upload", description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--config", required=True, action="append", help="stage YAML; repeat to layer (stages/demo.yaml)")
    parser.add_argument("--to", required=True, type=Path, help="storage folder, e.g. /teamspace/s3_connections/NAME/data")
    args, overrides = parser.parse_known_args(argv)  # the rest: dotted stage overrides, e.g. --data.data_root DIR
    data = data_settings(parse_stage_config(args.config, overrides))
    files = sorted(rel for paths in stage_files(data).values() for rel in paths)
    entries = upload_files(Path(data.data_root).expanduser(), files, args.to)
    total = sum(entry.size for entry in entries.values())
    print(f"{len(entries)} files, {total:,} bytes, verified in {args.to} (manifest {args.to / MANIFEST_NAME})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
