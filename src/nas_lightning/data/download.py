"""Download a file once, verify its checksum, and explain every failure in one line.

Checksums are written ``"<algorithm>:<hex digest>"`` (``"md5:f26c…"``, ``"sha256:9267…"``), so a
dataset can carry whichever digest its public source publishes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

log = logging.getLogger(__name__)

# Some mirrors (wikitext.smerity.com) answer urllib's default User-Agent with HTTP 403.
USER_AGENT = "Mozilla/5.0 (compatible; nas_lightning dataset download)"
# Fixed-length digests only (the shake_* algorithms need a length).
ALGORITHMS = sorted(a for a in hashlib.algorithms_guaranteed if not a.startswith("shake"))


def parse_checksum(checksum: str) -> tuple[str, str]:
    """Split ``"algo:hex"``; the algorithm must be one hashlib always provides."""
    algo, sep, digest = str(checksum).partition(":")
    algo, digest = algo.strip().lower(), digest.strip().lower()
    if not sep or algo not in ALGORITHMS or not digest:
        raise ValueError(
            f"checksum must look like 'md5:<hex>' or 'sha256:<hex>', got {checksum!r}; valid "
            f"algorithms: {', '.join(ALGORITHMS)}"
        )
    return algo, digest


def file_digest(path: Path, algo: str) -> str:
    digest = hashlib.new(algo, usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksum(
    path: Path,
    checksum: str | None,
    what: str,
    source: str | None = None,
    target: Path | None = None,
) -> None:
    """Raise a one-line error if ``path`` does not match ``checksum`` (``None``: not checked).

    ``source`` is the URL a fresh download came from (the file is then a temp file that the
    caller discards); without it ``path`` is a file already on disk that the user should delete.
    """
    if checksum is None:
        log.warning("No checksum configured for %s; %s is not verified", what, path)
        return
    algo, expected = parse_checksum(checksum)
    actual = file_digest(path, algo)
    if actual == expected:
        return
    target = target or path
    if source:
        where, hint = f"downloaded from {source}", "The download was discarded; retry."
    else:
        where, hint = f"at {path}", "Delete it and retry."
    raise RuntimeError(
        f"{algo.upper()} mismatch for {what} {where} ({target}): expected {expected}, got "
        f"{actual}. The file is corrupt, incomplete or a different version. {hint}"
    )


def download(url: str, target: Path, checksum: str | None, what: str, timeout: float) -> None:
    """Stream ``url`` to a temp file beside ``target``; rename it once the checksum matches."""
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("Downloading %s from %s to %s", what, url, target)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, suffix=".part")
    tmp = Path(tmp_name)
    try:
        try:
            request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
            with (
                os.fdopen(fd, "wb") as out,
                urllib.request.urlopen(request, timeout=timeout) as resp,
            ):
                shutil.copyfileobj(resp, out, length=1 << 20)
        except (OSError, ValueError) as err:  # URLError, HTTPError, timeouts, refused, bad URL
            raise RuntimeError(
                f"Could not download {what} from {url} ({err}). If this machine has no internet "
                f"access, download the file manually and save it as {target}."
            ) from err
        verify_checksum(tmp, checksum, what, source=url, target=target)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def ensure_file(
    path: Path, url: str, checksum: str | None, what: str, allow_download: bool, timeout: float
) -> None:
    """Make sure a verified ``path`` exists: check it if present, else download it (if allowed)."""
    if path.is_file():
        verify_checksum(path, checksum, what)
        return
    if not allow_download:
        raise FileNotFoundError(
            f"{what} not found at {path} and download=False. Download it manually from {url} "
            f"and save it as {path}, or set download=True."
        )
    download(url, path, checksum, what, timeout)
