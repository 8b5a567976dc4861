"""Publishers' files in `data.root/<name>/`: fetched when missing, checked against the
published MD5 checksums, or an offline error that says how to place them by hand.

Files already present are read as they are (no checksum pass over gigabytes at each run).
A download goes to `<file>.part` and is renamed only once its checksum matches; a mismatch
deletes it and is an error, since a wrong file must never be trained on silently.
"""

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from reglab.data.idx import DataFileError

TIMEOUT_S = 30  # per connection attempt: an offline cluster fails fast


def data_folder(root: str | os.PathLike, name: str) -> Path:
    """`root/name`, with `~` expanded (root's default comes from $REGLAB_DATA)."""
    return Path(os.path.expanduser(str(root))) / name


def md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(url: str, target: Path, checksum: str) -> None:
    """url → target, or ChecksumError (the file deleted); OSError when it cannot be reached."""
    partial = target.with_name(target.name + ".part")
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(partial, "wb") as f:
            for block in iter(lambda: response.read(1 << 20), b""):
                digest.update(block)
                f.write(block)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if digest.hexdigest() != checksum:
        partial.unlink()
        raise DataFileError(
            f"{url}: the downloaded file's MD5 is {digest.hexdigest()}, not the published"
            f" {checksum}; it was deleted (allowed: a file with the published checksum)"
        )
    partial.replace(target)


def ensure_files(
    name: str,
    folder: Path,
    files: Mapping[str, str],
    mirrors: Sequence[str],
    download: bool = True,
) -> None:
    """Every file of `files` (name → published MD5) in `folder`: fetched from the first
    mirror that answers, or one error line naming what is missing and how to place it."""
    missing = [f for f in files if not (folder / f).exists()]
    if not missing:
        return
    reasons = []
    if download:
        folder.mkdir(parents=True, exist_ok=True)
        for file in list(missing):
            reason = _fetch_from_mirrors(file, folder, files[file], mirrors)
            if reason is None:
                missing.remove(file)
            else:
                reasons.append(reason)
    if missing:
        raise DataFileError(offline_message(name, folder, missing, mirrors, download, reasons))


def _fetch_from_mirrors(file: str, folder: Path, checksum: str, mirrors: Sequence[str]):
    """None once `file` is in place, else why no mirror gave it (a checksum error raises)."""
    reason = "no mirror configured"
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + file
        try:
            _fetch(url, folder / file, checksum)
            return None
        except (urllib.error.URLError, OSError) as err:  # no network, 404, refused…
            reason = f"{url}: {getattr(err, 'reason', err)}"
    return reason


def offline_message(
    name: str,
    folder: Path,
    missing: Sequence[str],
    mirrors: Sequence[str],
    download: bool,
    reasons: Sequence[str],
) -> str:
    why = f"could not be downloaded ({reasons[-1]})" if download else "data.download=false"
    urls = " or ".join(m.rstrip("/") + "/" for m in mirrors) or "the publisher"
    return (
        f"data={name}: {', '.join(missing)} missing in {folder}, and {why}; on a machine"
        f" with network, fetch them from {urls} and copy them into {folder} as they are"
        " (or point data.root or $REGLAB_DATA at a folder holding"
        f" {folder.name}/)"
    )
