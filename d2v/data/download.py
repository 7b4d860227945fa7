"""Downloads: resumable (HTTP Range), checksum-verified, idempotent; safe archive extraction.

`download(url, dest, sha256=...)` keeps a `<dest>.part` file between attempts and asks the server for
the missing bytes only; the finished file is verified before it is renamed into place. A file that
already exists with the right checksum is not fetched again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from d2v.atomic import durable_replace
from d2v.data.io import sha256_file
from d2v.errors import D2VError

if TYPE_CHECKING:
    from d2v.data.shards import RateProgress

CHUNK = 1 << 20
PROGRESS_BYTES = 1 << 30  # hashing a file this large shows its progress


def file_digest(path: Path, algorithm: str) -> str:
    """The file's hex digest; a progress line (MiB, rate, ETA) for files above PROGRESS_BYTES: checking
    ImageNet's 138 GB train archive takes minutes."""
    size = path.stat().st_size
    if size < PROGRESS_BYTES:
        return sha256_file(path) if algorithm == "sha256" else _digest(path, algorithm, None)
    from d2v.data.shards import RateProgress

    progress = RateProgress(f"{algorithm} {path.name}", size >> 20, unit="MiB")
    try:
        return _digest(path, algorithm, progress)
    finally:
        progress.close()


def _digest(path: Path, algorithm: str, progress: "RateProgress | None") -> str:
    digest = hashlib.new(algorithm)
    done = 0
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
            done += len(block)
            if progress is not None and done % (64 * CHUNK) == 0:
                progress.update(done >> 20)
    if progress is not None:
        progress.update(done >> 20)
    return digest.hexdigest()


def download(url: str, dest: str | Path, checksum: str = "", algorithm: str = "sha256", timeout: float = 60.0) -> str:
    """Fetch `url` to `dest` (resuming a partial download); return the file's digest."""
    dest = Path(dest)
    if dest.is_file():
        existing = file_digest(dest, algorithm)  # hashed once: a large archive takes minutes
        if not checksum or existing == checksum:
            return existing
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            # 206 = the server honoured the range; 200 = it sent the whole file, so start over.
            mode = "ab" if have and response.status == 206 else "wb"
            with open(part, mode) as f:
                shutil.copyfileobj(response, f, CHUNK)
    except urllib.error.HTTPError as exc:
        if exc.code != 416:  # 416: nothing left to send, the part file is already complete
            raise D2VError(f"{url}: download failed (HTTP {exc.code})") from None
    except (urllib.error.URLError, OSError) as exc:
        raise D2VError(f"{url}: download interrupted ({exc}); run again to resume from {part}") from None
    digest = file_digest(part, algorithm)
    if checksum and digest != checksum:
        part.unlink()
        raise D2VError(f"{url}: {algorithm} mismatch: expected {checksum}, got {digest} (partial file removed)")
    durable_replace(part, dest)
    return digest


def _check_member(name: str, target: Path, link: str | None = None) -> None:
    path = (target / name).resolve()
    if Path(name).is_absolute() or ".." in Path(name).parts or not path.is_relative_to(target):
        raise D2VError(f"unsafe archive member {name!r}: it would be written outside {target}")
    if link is not None:
        dest = (path.parent / link).resolve()
        if Path(link).is_absolute() or not dest.is_relative_to(target):
            raise D2VError(f"unsafe archive member {name!r}: link to {link!r} leaves {target}")


def extract(archive: str | Path, target: str | Path) -> Path:
    """Extract a .tar(.gz) or .zip into `target` after checking every member; idempotent via a stamp."""
    archive, target = Path(archive), Path(target).resolve()
    stamp = target / f".extracted-{archive.name}"
    if stamp.exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=target))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for name in zf.namelist():
                    _check_member(name, target)
                zf.extractall(staging)
        else:
            with tarfile.open(archive) as tf:
                for member in tf.getmembers():
                    link = member.linkname if (member.issym() or member.islnk()) else None
                    if member.islnk() and link is not None:
                        _check_member(link, target)  # hard links name a member path
                        link = None
                    _check_member(member.name, target, link)
                    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
                        raise D2VError(f"{archive}: member {member.name!r} is a device or fifo")
                tf.extractall(staging, filter="tar")
        for child in staging.iterdir():
            final = target / child.name
            if final.exists():
                shutil.rmtree(final) if final.is_dir() else final.unlink()
            os.replace(child, final)
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as exc:
        raise D2VError(f"{archive}: cannot extract ({exc})") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    stamp.touch()
    return target


def pip_download_sdist(name: str, version: str, sha256: str, dest_dir: str | Path) -> Path:
    """Fetch a PyPI sdist with pip, hash-pinned (--require-hashes); a verified copy is reused."""
    dest_dir = Path(dest_dir)
    target = dest_dir / f"{name}-{version}.tar.gz"
    if target.is_file() and sha256_file(target) == sha256:
        return target
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(f"{name}=={version} --hash=sha256:{sha256}\n")
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
               "--require-hashes", "-r", str(requirements), "-d", tmp]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise D2VError(f"pip download {name}=={version} failed: {done.stderr.strip()[-400:]}")
        found = [p for p in Path(tmp).iterdir() if p.name.endswith(".tar.gz")]
        if not found or sha256_file(found[0]) != sha256:
            raise D2VError(f"pip download {name}=={version}: no sdist with sha256 {sha256}")
        shutil.move(str(found[0]), target)
    return target
