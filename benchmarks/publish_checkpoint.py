"""Publishing a ~1 GB last.ckpt to storage: the previous in-place resume copy vs the streaming copy.

    python -m benchmarks.publish_checkpoint [--gib 1.0] [--dir DIR]

DIR stands in for the storage mount (default: a temporary folder on local disk; point it at a
/teamspace/s3_connections/... folder in a Studio for the real figure). The scenario is the one every
30-minute save hits: storage already holds the previous last.ckpt, of the same size. Reported per
method: wall time, bytes this process read (/proc/self/io rchar) and wrote (wchar), and for the
mirror, how long the training thread is blocked by starting the publish (the copy runs in a thread).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from lightning_app import checkpoints
from lightning_app.transfer import CHUNK_BYTES, sha256_file


def io_counters() -> tuple[int, int]:
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(fields["rchar"]), int(fields["wchar"])


def _append_from(src: Path, dst: Path, offset: int) -> None:
    with open(src, "rb") as fin, open(dst, "r+b" if offset else "wb") as fout:
        fin.seek(offset)
        fout.seek(offset)
        fout.truncate()
        while chunk := fin.read(CHUNK_BYTES):
            fout.write(chunk)


def previous_publish(src: Path, dst: Path) -> None:
    """The copy publishing used before (kept here only as the baseline): hash src; a same-size dst
    is taken for a finished partial copy, opened r+b, hashed, found different, rewritten from 0 and
    hashed again."""
    expected = sha256_file(src)
    size = src.stat().st_size
    partial = dst.stat().st_size if dst.exists() else 0
    offset = partial if partial <= size else 0
    _append_from(src, dst, offset)
    if sha256_file(dst) != expected and offset:
        _append_from(src, dst, 0)
        assert sha256_file(dst) == expected


def measure(label: str, fn) -> dict:
    r0, w0 = io_counters()
    t0 = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t0
    r1, w1 = io_counters()
    return {"method": label, "seconds": seconds, "read": r1 - r0, "written": w1 - w0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.publish_checkpoint", description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--dir", type=Path, default=None, help="storage stand-in (default: a temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        local, remote = root / "local", root / "remote"
        local.mkdir()
        remote.mkdir()
        size = int(args.gib * (1 << 30))
        with open(local / "last.ckpt", "wb") as f:  # random bytes: nothing compresses or dedups
            for _ in range(0, size, CHUNK_BYTES):
                f.write(os.urandom(min(CHUNK_BYTES, size - f.tell())))

        def stale_remote() -> None:  # the previous save: same size, other bytes
            with open(remote / "last.ckpt", "wb") as f:
                for _ in range(0, size, CHUNK_BYTES):
                    f.write(os.urandom(min(CHUNK_BYTES, size - f.tell())))

        rows = []
        stale_remote()
        rows.append(measure("previous (r+b resume, verify by re-reading)", lambda: previous_publish(local / "last.ckpt", remote / "last.ckpt")))
        stale_remote()
        rows.append(measure("streaming copy + marker (now)", lambda: checkpoints.publish(local / "last.ckpt", remote / "last.ckpt")))
        assert checkpoints.is_complete(remote / "last.ckpt")
        stale_remote()
        checkpoints.remove(remote / "last.ckpt")
        mirror = checkpoints.MirrorCheckpoints(str(local), str(remote))
        trainer = type("Rank0", (), {"is_global_zero": True})()
        t0 = time.perf_counter()
        mirror.sync(trainer)
        blocked = time.perf_counter() - t0
        mirror.join()
        background = time.perf_counter() - t0
    gib = 1 << 30
    print(f"publish of a {args.gib:g} GiB last.ckpt over a same-size previous copy ({'local disk' if args.dir is None else args.dir})")
    base = rows[0]
    for row in rows:
        print(
            f"  {row['method']:<46} {row['seconds']:6.2f} s  read {row['read'] / gib:5.2f} GiB  "
            f"written {row['written'] / gib:5.2f} GiB  time x{row['seconds'] / base['seconds']:.2f}  "
            f"read x{row['read'] / base['read']:.2f}"
        )
    print(f"  mirror in a background thread: training thread blocked {blocked * 1000:.1f} ms, publish took {background:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
