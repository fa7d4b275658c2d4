"""The data layer against damaged, hostile and odd input (issue 15, item 5).

Bad input must give a FormatError naming the file, the line and the expected format; a damaged
cache must be rebuilt; nothing a user gave may be dropped or changed silently.
"""
from __future__ import annotations

import gzip
import os
import shutil
import threading
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

import advrec.data as data
from advrec.data import (FormatError, load_file, read_amazon, read_csv, read_lastfm, read_libfm,
                         read_ml1m, read_ml100k)
from advrec.data import _parse, content, datasets, fetch

FIX = Path(__file__).parent / "fixtures"
REAL_ML100K = Path.home() / ".cache" / "advrec" / "ml-100k"
TINY_COUNTS = {"ratings": 4, "users": 3, "items": 3}  # the ml100k_* fixtures
HUGE = "99999999999999999999999"  # beyond int64
AMAZON = '{{"reviewerID": "A1", "asin": "B1", "overall": {r}, "unixReviewTime": {t}}}\n'


def amazon_line(r="5.0", t="1372118400"):
    return AMAZON.format(r=r, t=t)


def write_gz(path: Path, payload: bytes, repeat: int = 1, level: int = 9) -> Path:
    """A .gz written a block at a time, so a big payload never sits in memory."""
    with gzip.open(path, "wb", compresslevel=level) as f:
        for _ in range(repeat):
            f.write(payload)
    return path


def no_temp_files(d: Path) -> bool:
    return not [p.name for p in d.iterdir() if p.name.endswith(".part")]


# ----------------------------------------------------------------------------- 1: npz cache

def damage(npz: Path, how: str) -> None:
    if how == "empty":
        npz.write_bytes(b"")
    elif how == "truncated":
        npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    elif how == "garbage":
        npz.write_bytes(np.random.default_rng(0).bytes(4096))
    elif how == "other arrays":
        np.savez(npz, something=np.arange(3))
    elif how == "pickled":
        with open(npz, "wb") as f:
            np.savez(f, version=np.array([{"a": 1}], dtype=object))


@pytest.mark.skipif(not (REAL_ML100K / "ml-100k.inter").is_file(),
                    reason="the real ML-100K files are not in ~/.cache/advrec/ml-100k")
@pytest.mark.parametrize("how", ["empty", "truncated", "garbage"])
def test_unusable_cache_of_real_ml100k_is_rebuilt(tmp_path, reports, how):
    d = tmp_path / "ml-100k"
    d.mkdir()
    for f in ("ml-100k.inter", "ml-100k.user", "ml-100k.item"):
        shutil.copy(REAL_ML100K / f, d / f)
    npz = d / "ml-100k.npz"
    first = datasets.load_ml100k(data_dir=tmp_path, download=False)
    assert npz.is_file()
    damage(npz, how)
    ds = datasets.load_ml100k(data_dir=tmp_path, download=False)
    assert len(ds.interactions) == 100_000 and ds.source == str(d)
    assert any("unusable" in m and str(npz) in m for m in reports)
    again = datasets.load_ml100k(data_dir=tmp_path, download=False)  # the rebuilt cache
    assert "cache" in again.source
    np.testing.assert_array_equal(again.interactions.user, first.interactions.user)
    assert no_temp_files(d)


@pytest.mark.parametrize("how", ["empty", "truncated", "garbage", "other arrays", "pickled"])
def test_unusable_cache_is_rebuilt(tmp_path, monkeypatch, reports, how):
    monkeypatch.setattr(datasets, "ML100K_COUNTS", TINY_COUNTS)
    d = tmp_path / "ml-100k"
    shutil.copytree(FIX / "ml100k_grouplens", d)
    datasets.load_ml100k(data_dir=tmp_path, download=False)
    damage(d / "ml-100k.npz", how)
    assert len(datasets.load_ml100k(data_dir=tmp_path, download=False).interactions) == 4
    assert any("unusable" in m for m in reports)
    assert "cache" in datasets.load_ml100k(data_dir=tmp_path, download=False).source


# ----------------------------------------------------------------------------- 2: temp files

def run_together(fn, n=8, rounds=5):
    """fn() in n threads released at once, `rounds` times; the errors they raised."""
    errors: list[BaseException] = []
    for _ in range(rounds):
        barrier = threading.Barrier(n)

        def work():
            barrier.wait()
            try:
                fn()
            except BaseException as e:  # collected for the assertion
                errors.append(e)

        threads = [threading.Thread(target=work) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return errors


def test_concurrent_cache_writes_do_not_collide(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "ML100K_COUNTS", TINY_COUNTS)
    ds = read_ml100k(FIX / "ml100k_grouplens")
    npz = tmp_path / "ml-100k.npz"
    assert run_together(lambda: datasets._save_npz(ds, npz, "here")) == []
    back, origin = datasets._load_npz(npz, "ml-100k")
    assert origin == "here"
    np.testing.assert_array_equal(back.interactions.item, ds.interactions.item)
    assert [p.name for p in tmp_path.iterdir()] == ["ml-100k.npz"]


def test_concurrent_extracts_do_not_collide(tmp_path):
    archive = tmp_path / "a.zip"
    payload = {f"ml-100k/{f}": (FIX / "ml100k_grouplens" / f).read_bytes() * 200
               for f in ("u.data", "u.user", "u.item")}
    with zipfile.ZipFile(archive, "w") as zf:
        for name, blob in payload.items():
            zf.writestr(name, blob)
    dest = tmp_path / "out"

    def extract():
        with zipfile.ZipFile(archive) as zf:
            fetch._extract(zf, {m: m.split("/")[1] for m in payload}, dest)

    assert run_together(extract) == []
    for m, blob in payload.items():
        assert (dest / m.split("/")[1]).read_bytes() == blob
    assert sorted(p.name for p in dest.iterdir()) == ["u.data", "u.item", "u.user"]


def test_oversized_archive_member_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(fetch, "_MAX_MEMBER", 100)
    with zipfile.ZipFile(tmp_path / "a.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ml-100k/u.data", b"0" * 101)
    with zipfile.ZipFile(tmp_path / "a.zip") as zf, \
            pytest.raises(ValueError, match=r"larger than 0 MiB.*ml-100k/u\.data \(101 bytes\)"):
        fetch._extract(zf, {"ml-100k/u.data": "u.data"}, tmp_path / "out")
    assert not (tmp_path / "out" / "u.data").exists()


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")

    def fail(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        fetch.atomic_write(target, fail)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["x.bin"]


# ----------------------------------------------------------------------------- 3: escaping errors

@pytest.mark.parametrize("name, text, reader, match", [
    ("t.csv", f"user,item,rating,timestamp\n1,2,3,4\n1,3,3,{HUGE}\n", read_csv,
     r"t\.csv line 3: timestamp must be an integer within int64, got '9+'; expected 4 fields"),
    ("ratings.dat", f"1::2::3::4\n{HUGE}::2::3::4\n", read_ml1m,
     r"ratings\.dat line 2: user id must be an integer within int64.*UserID::MovieID"),
    ("user_artists.dat", f"userID\tartistID\tweight\n2\t{HUGE}\t3\n", read_lastfm,
     r"user_artists\.dat line 2: artistID must be an integer"),
    ("x.libfm", f"1 3:1\n0 {HUGE}:1\n", read_libfm,
     r"x\.libfm line 2: feature index 9+ is too large.*expected 'label idx:val"),
    ("r.json", amazon_line() + amazon_line(t=HUGE), read_amazon,
     r"r\.json line 2: 'unixReviewTime' must be an integer within int64"),
    ("r.json", amazon_line() + amazon_line(r="1" + "0" * 5000), read_amazon,
     r"r\.json line 2: invalid JSON .*expected one JSON object"),
    ("r.json", amazon_line() + "[" * 100_000 + "]" * 100_000 + "\n", read_amazon,
     r"r\.json line 2: JSON nested too deeply; expected one JSON object"),
])
def test_overflow_and_recursion_are_format_errors(tmp_path, name, text, reader, match):
    (tmp_path / name).write_text(text)
    with pytest.raises(FormatError, match=match):
        reader(tmp_path / name)


def truncated_gz(path: Path, text: str) -> Path:
    blob = gzip.compress(text.encode())
    path.write_bytes(blob[: len(blob) // 2])
    return path


def test_truncated_gz_names_the_line(tmp_path):
    lines = "".join(f"{u},{u % 97},{u % 5 + 1}\n" for u in range(200_000))
    p = truncated_gz(tmp_path / "r.csv.gz", lines)
    with pytest.raises(FormatError, match=r"r\.csv\.gz line \d+: the gzip data is corrupt or "
                                          r"cut short .*expected a complete gzip file") as e:
        read_csv(p)
    got = int(str(e.value).split(" line ")[1].split(":")[0])
    assert got == zlib_prefix_lines(p) + 1  # the first line the file does not hold in full
    p = truncated_gz(tmp_path / "r.json.gz", amazon_line() * 50_000)
    with pytest.raises(FormatError, match=r"r\.json\.gz line \d+: the gzip data is corrupt"):
        read_amazon(p)


def zlib_prefix_lines(p: Path) -> int:
    """Complete lines in what a cut-short .gz still holds (as zcat would print them)."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    return d.decompress(p.read_bytes()).count(b"\n")


def test_corrupt_gz_is_a_format_error(tmp_path):
    blob = bytearray(gzip.compress(b"1,2,3\n" * 1000 + b"4,5,6\n" * 1000))
    blob[len(blob) // 2] ^= 0xFF
    blob[len(blob) // 2 + 1] ^= 0xFF
    (tmp_path / "c.csv.gz").write_bytes(bytes(blob))
    with pytest.raises(FormatError, match=r"c\.csv\.gz line \d+: the gzip data is corrupt"):
        read_csv(tmp_path / "c.csv.gz")
    (tmp_path / "c.json.gz").write_bytes(bytes(blob))
    with pytest.raises(FormatError, match=r"c\.json\.gz line \d+: the gzip data is corrupt"):
        read_amazon(tmp_path / "c.json.gz")


def test_gz_that_is_not_gzip(tmp_path):
    for name, reader in (("r.csv.gz", read_csv), ("r.json.gz", read_amazon)):
        (tmp_path / name).write_text("1,2,3\n")
        with pytest.raises(FormatError, match=rf"{name}: named \.gz but is not gzip data"):
            reader(tmp_path / name)


def test_gzip_data_without_gz_name_is_read(tmp_path):
    (tmp_path / "r.csv").write_bytes(gzip.compress(b"1,2,3\n4,5,6\n"))
    assert read_csv(tmp_path / "r.csv").user_ids.tolist() == [1, 4]


@pytest.mark.parametrize("ending", ["\r", "\r\n", "\n"])
def test_any_line_ending(tmp_path, ending):
    def write(name, lines):
        (tmp_path / name).write_bytes(ending.join(lines).encode() + ending.encode())
        return tmp_path / name

    inter = read_csv(write("r.csv", ["user,item,rating", "1,2,3", "4,5,6"]))
    assert inter.user_ids.tolist() == [1, 4] and inter.rating.tolist() == [3, 6]
    fm = read_libfm(write("x.libfm", ["1 0:1 3:2", "0 2:1"]))
    assert fm.labels.tolist() == [1, 0] and fm.indices.tolist() == [0, 3, 2]
    assert len(read_amazon(write("r.json", [amazon_line().strip()] * 2))) == 2
    assert len(read_ml1m(write("ratings.dat", ["1::2::3::4", "2::2::3::5"])).interactions) == 2
    with pytest.raises(FormatError, match=r"r\.csv line 3: expected 3 fields"):
        read_csv(write("r.csv", ["user,item,rating", "1,2,3", "4,5"]))
    with pytest.raises(FormatError, match=r"x\.libfm line 3: bad feature"):
        read_libfm(write("x.libfm", ["1 0:1", "1 0:1", "1 zz"]))


# ----------------------------------------------------------------------------- 4: BOM

BOM = b"\xef\xbb\xbf"


def test_bom_without_header_keeps_int_ids(tmp_path):
    (tmp_path / "r.csv").write_bytes(BOM + b"1,10,3\n2,20,4\n")
    inter = read_csv(tmp_path / "r.csv")
    assert inter.user_ids.dtype == np.int64 and inter.user_ids.tolist() == [1, 2]


def test_bom_with_header(tmp_path, reports):
    (tmp_path / "r.csv").write_bytes(BOM + b"user_id,item_id,rating\n1,10,3\n2,20,4\n")
    inter = read_csv(tmp_path / "r.csv")
    assert inter.user_ids.tolist() == [1, 2] and inter.rating.tolist() == [3, 4]
    assert any("line 1 taken as a header: 'user_id,item_id,rating'" in m for m in reports)
    lastfm = tmp_path / "user_artists.dat"
    lastfm.write_bytes(BOM + (FIX / "lastfm" / "user_artists.dat").read_bytes())
    assert len(read_lastfm(lastfm)) == 4
    d = tmp_path / "recbole"
    shutil.copytree(FIX / "ml100k_recbole", d)
    for f in d.iterdir():
        f.write_bytes(BOM + f.read_bytes())
    assert len(read_ml100k(d).interactions) == 4


def test_bom_in_streamed_readers(tmp_path):
    (tmp_path / "x.libfm").write_bytes(BOM + b"1 0:1\n0 1:1\n")
    assert read_libfm(tmp_path / "x.libfm").labels.tolist() == [1, 0]
    (tmp_path / "r.json.gz").write_bytes(gzip.compress(BOM + amazon_line().encode()))
    assert read_amazon(tmp_path / "r.json.gz").user_ids.tolist() == ["A1"]


def test_bom_in_a_latin1_file_means_utf8(tmp_path, reports):
    (tmp_path / "ratings.dat").write_text("1::10::5::978300760\n")
    (tmp_path / "movies.dat").write_bytes(BOM + "10::Café Noir (1994)::Drama\n".encode())
    ds = read_ml1m(tmp_path)
    assert ds.item_features["title"].tolist() == ["Café Noir (1994)"]
    assert any("movies.dat: starts with a UTF-8 byte-order mark" in m for m in reports)


# ----------------------------------------------------------------------------- 5: non-finite

@pytest.mark.parametrize("text, match", [
    ("1 0:1\nnan 0:1\n", r"line 2: label must be a finite number"),
    ("1 0:1\ninf 0:1\n", r"line 2: label must be a finite number"),
    ("1 0:1\n1 0:1 4:nan\n", r"line 2: feature value must be a finite number.*got nan"),
    ("1 0:1\n1 4:-inf\n", r"line 2: feature value must be a finite number"),
    ("1 0:1\n1 4:1e39\n", r"line 2: feature value must be a finite number within float32"),
    ("1e39 0:1\n", r"line 1: label must be a finite number within float32"),
])
def test_libfm_refuses_non_finite(tmp_path, text, match):
    (tmp_path / "x.libfm").write_text(text)
    with pytest.raises(FormatError, match=r"x\.libfm " + match):
        read_libfm(tmp_path / "x.libfm")


@pytest.mark.parametrize("r", ["NaN", "Infinity", "-Infinity", "1e400", "1e39", "1" + "0" * 400])
def test_amazon_refuses_non_finite_overall(tmp_path, r):
    (tmp_path / "r.json").write_text(amazon_line() + amazon_line(r=r))
    with pytest.raises(FormatError, match=r"r\.json line 2: 'overall' must be a finite number"):
        read_amazon(tmp_path / "r.json")


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity", "1e39", "1e400"])
def test_csv_and_lastfm_refuse_non_finite(tmp_path, value):
    (tmp_path / "r.csv").write_text(f"1,2,3\n1,3,{value}\n")
    with pytest.raises(FormatError, match=r"r\.csv line 2: rating must be a finite number"):
        read_csv(tmp_path / "r.csv")
    (tmp_path / "user_artists.dat").write_text(f"userID\tartistID\tweight\n2\t5\t{value}\n")
    with pytest.raises(FormatError, match=r"user_artists\.dat line 2: weight must be a finite"):
        read_lastfm(tmp_path / "user_artists.dat")


# ----------------------------------------------------------------------------- 6: gzip bombs

def test_gzip_bomb_is_refused_while_streaming(tmp_path, monkeypatch):
    """33 MiB of lines in a ~50 KB .gz: refused after ~10 MiB, long before it is all in memory."""
    monkeypatch.setattr(_parse, "_GZIP_FLOOR", 1 << 20, raising=False)
    bomb = write_gz(tmp_path / "bomb.csv.gz", b"1,2,3\n" * (1 << 19), repeat=11)
    assert bomb.stat().st_size < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(FormatError) as e:
            read_csv(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    msg = str(e.value)
    assert msg.startswith("bomb.csv.gz: decompresses to more than")
    assert "ADVREC_GZIP_MAX_RATIO" in msg and "200 x its size" in msg
    limit = _parse.gzip_limit(bomb.stat().st_size)
    assert limit < 12 << 20 and peak < 2 * limit  # the buffer of what came before the limit
    with pytest.raises(FormatError, match="decompresses to more than"):
        list(_parse.iter_lines(bomb))  # the streamed readers (libFM, Amazon) too


def test_gzip_limit_can_be_raised(tmp_path, monkeypatch):
    monkeypatch.setattr(_parse, "_GZIP_FLOOR", 1 << 20, raising=False)
    gz = write_gz(tmp_path / "x.libfm.gz", b"1 0:1 1:1\n" * (1 << 18), repeat=1)  # 2.5 MiB
    with pytest.raises(FormatError, match="decompresses to more than"):
        read_libfm(gz)
    monkeypatch.setenv("ADVREC_GZIP_MAX_RATIO", "100000")
    assert len(read_libfm(gz)) == 1 << 18
    monkeypatch.setenv("ADVREC_GZIP_MAX_RATIO", "inf")
    assert len(_parse.read_lines(gz)) == 1 << 18
    for bad in ("zero", "0", "-5", "nan"):
        monkeypatch.setenv("ADVREC_GZIP_MAX_RATIO", bad)
        with pytest.raises(ValueError, match="ADVREC_GZIP_MAX_RATIO"):
            _parse.read_lines(gz)


def test_ordinary_gz_is_within_the_default_limit(tmp_path):
    gz = write_gz(tmp_path / "r.csv.gz", b"".join(b"%d,%d,4\n" % (u, u % 7) for u in range(5000)))
    assert len(read_csv(gz)) == 5000


# ----------------------------------------------------------------------------- 7: probed further

def test_quoted_field_spanning_lines_is_refused(tmp_path):
    p = tmp_path / "q.csv"
    p.write_text('user,item,rating\n1,"2,5\n3",4\n5,6,7\n')  # was merged silently into one row
    with pytest.raises(FormatError, match=r"q\.csv line 2: a quote opened on this line is not "
                                          r"closed on it"):
        read_csv(p)
    p.write_text('user,item,rating\n1,"x",4\n1,"ab"c,4\n')
    with pytest.raises(FormatError, match=r"q\.csv line 3: .*expected one row per line"):
        read_csv(p)
    p.write_text('user,item,rating\n1,"x",4\n1,"ab,4\n')
    with pytest.raises(FormatError, match=r"q\.csv line 3: "):
        read_csv(p)


def test_empty_id_is_refused(tmp_path):
    (tmp_path / "r.csv").write_text("user,item,rating\n1,a,3\n1,,3\n")
    with pytest.raises(FormatError, match=r"r\.csv line 3: empty item id"):
        read_csv(tmp_path / "r.csv")
    (tmp_path / "r.csv").write_text("1,a,3\n  ,b,3\n")
    with pytest.raises(FormatError, match=r"r\.csv line 2: empty user id"):
        read_csv(tmp_path / "r.csv")
    (tmp_path / "r.json").write_text(amazon_line() + amazon_line().replace('"A1"', '""'))
    with pytest.raises(FormatError, match=r"r\.json line 2: 'reviewerID' must be a non-empty"):
        read_amazon(tmp_path / "r.json")
    (tmp_path / "r.json").write_text(amazon_line().replace('"B1"', "null"))
    with pytest.raises(FormatError, match=r"r\.json line 1: 'asin' must be a non-empty string"):
        read_amazon(tmp_path / "r.json")


def test_numeric_looking_text_ids_are_reported(tmp_path, reports):
    (tmp_path / "r.csv").write_text("1.0,7,3\n2.0,8,3\n1,7,3\n")
    inter = read_csv(tmp_path / "r.csv")
    assert inter.user_ids.tolist() == ["1", "1.0", "2.0"]
    assert any("r.csv: user ids are kept as text, since '1.0' on line 1" in m for m in reports)
    (tmp_path / "r.csv").write_text(f"-3,7,3\n{HUGE},8,3\n")
    assert read_csv(tmp_path / "r.csv").user_ids.tolist() == ["-3", HUGE]
    assert any(f"'{HUGE}' on line 2" in m for m in reports)
    (tmp_path / "r.csv").write_text("-3,7,3\n-1,8,3\n")  # negative ids are plain ids
    assert read_csv(tmp_path / "r.csv").user_ids.tolist() == [-3, -1]


def test_bad_bytes_name_their_line(tmp_path):
    (tmp_path / "r.csv").write_bytes(b"1,2,3\n1,3,3\n1,\xff,3\n")
    with pytest.raises(FormatError, match=r"r\.csv line 3: not valid utf-8 text"):
        read_csv(tmp_path / "r.csv")
    (tmp_path / "r.json").write_bytes(amazon_line().encode() * 3000 + b'{"x": "\xff"}\n')
    with pytest.raises(FormatError, match=r"r\.json line 3001: not valid utf-8 text"):
        read_amazon(tmp_path / "r.json")
    (tmp_path / "r.csv").write_bytes(b"1,2,3\n1,3\x00,3\n")
    with pytest.raises(FormatError, match=r"r\.csv line 2: contains a NUL byte"):
        read_csv(tmp_path / "r.csv")
    (tmp_path / "x.libfm").write_bytes(b"1 0:1\n1 0:1\x00\n")
    with pytest.raises(FormatError, match=r"x\.libfm line 2: contains a NUL byte"):
        read_libfm(tmp_path / "x.libfm")
    (tmp_path / "r.csv").write_bytes("1,2,3\n".encode("utf-16"))
    with pytest.raises(FormatError, match=r"r\.csv: is UTF-16 text"):
        read_csv(tmp_path / "r.csv")


def test_directories_and_files_mixed_up(tmp_path):
    for reader in (read_csv, read_libfm, read_amazon):
        with pytest.raises(IsADirectoryError, match="is a directory; expected a data file"):
            reader(tmp_path)
    (tmp_path / "u.data").write_text("1\t2\t3\t4\n")
    with pytest.raises(NotADirectoryError, match="is a file; expected the directory"):
        read_ml100k(tmp_path / "u.data")


def test_fifo_and_devices_are_refused(tmp_path):
    os.mkfifo(tmp_path / "r.csv")  # reading it would block forever
    with pytest.raises(OSError, match="not a regular file"):
        read_csv(tmp_path / "r.csv")
    os.symlink("/dev/zero", tmp_path / "z.csv")  # would never end
    with pytest.raises(OSError, match="not a regular file"):
        read_csv(tmp_path / "z.csv")


def test_read_csv_checks_sep(tmp_path):
    (tmp_path / "r.csv").write_text('1::"a"::3\n')
    for bad in ("", '"', "\n"):
        with pytest.raises(ValueError, match="sep must be a non-empty string"):
            read_csv(tmp_path / "r.csv", sep=bad)
    assert read_csv(tmp_path / "r.csv", sep="::").item_ids.tolist() == ['"a"']


def test_empty_gz_file(tmp_path):
    (tmp_path / "r.csv.gz").write_bytes(b"")
    with pytest.raises(FormatError, match=r"r\.csv\.gz: named \.gz but is not gzip data \(it is "
                                          r"empty\)"):
        read_csv(tmp_path / "r.csv.gz")
    (tmp_path / "r.csv.gz").write_bytes(gzip.compress(b""))
    with pytest.raises(FormatError, match=r"r\.csv\.gz: file is empty"):
        read_csv(tmp_path / "r.csv.gz")


def test_repeated_libfm_feature_is_reported(tmp_path, reports):
    (tmp_path / "x.libfm").write_text("1 0:1 2:1\n0 3:1 1:1 3:2\n")
    fm = read_libfm(tmp_path / "x.libfm")
    assert fm.indices.tolist() == [0, 2, 3, 1, 3]  # kept as given
    assert any("x.libfm: a feature index appears more than once on 1 line(s) (first: line 2)"
               in m for m in reports)


def test_libfm_index_must_be_ascii_digits(tmp_path):
    (tmp_path / "x.libfm").write_text("1 0:1\n1 \u0661:1\n")  # Arabic-Indic one
    with pytest.raises(FormatError, match=r"x\.libfm line 2: bad feature"):
        read_libfm(tmp_path / "x.libfm")


def test_ml100k_genre_table_is_checked(tmp_path):
    d = tmp_path / "ml"
    shutil.copytree(FIX / "ml100k_grouplens", d)
    genre = (d / "u.genre").read_text()
    (d / "u.genre").write_text(genre.replace("Adventure|2", "Adventure|1"))
    with pytest.raises(FormatError, match=r"u\.genre: the indices are \[0, 1, 1"):
        read_ml100k(d)
    (d / "u.genre").write_text(genre)
    item = (d / "u.item").read_text().splitlines(keepends=True)
    item[1] = item[1][:-2] + "2\n"
    (d / "u.item").write_text("".join(item))
    with pytest.raises(FormatError, match=r"u\.item line 2: genre flags must be 0 or 1"):
        read_ml100k(d)


def test_long_lines_are_reported_clipped(tmp_path):
    (tmp_path / "r.csv").write_text("1,2,3\n" + "1," * 200_000 + "1\n")
    with pytest.raises(FormatError, match=r"r\.csv line 2: expected 3 fields .*got 200001 "
                                          r"fields: '1,1,.*\.\.\.'$"):
        read_csv(tmp_path / "r.csv")
    (tmp_path / "r.csv").write_text("1,2,3\n1,2," + "9" * 1_000_000 + "\n")
    with pytest.raises(FormatError, match=r"r\.csv line 2: rating must be a finite") as e:
        read_csv(tmp_path / "r.csv")
    assert len(str(e.value)) < 300


@pytest.mark.parametrize("blob, suffix, match", [
    (b"", ".npy", r"not a \.npy file \(empty\)"),
    (b"", ".npz", r"not a \.npz file \(empty\)"),
    (b"\x00garbage" * 20, ".npy", r"not a \.npy file"),
    (b"\x00garbage" * 20, ".npz", r"not a \.npz file"),
    (None, ".npz", r"cannot read the \.npz"),
])
def test_damaged_item_feature_files(tmp_path, blob, suffix, match):
    p = tmp_path / f"f{suffix}"
    if blob is None:  # a real .npz cut short
        np.savez(p, ids=np.array([1, 2]), features=np.ones((2, 3)))
        p.write_bytes(p.read_bytes()[:-40])
    else:
        p.write_bytes(blob)
    with pytest.raises(FormatError, match=match):
        content.load_item_features(p, [1, 2])
    with pytest.raises(IsADirectoryError):
        content.load_item_features(tmp_path, [1, 2])


class _Embedder:
    info = {"model": "fake", "package": "fake", "package_version": "1", "weights_sha256": "0"}

    def encode(self, texts, batch_size, progress):
        return np.ones((len(texts), 4))


@pytest.mark.parametrize("npy_blob, side_text", [(b"", None), (None, "[1, 2]"), (None, "")])
def test_damaged_text_feature_cache_is_recomputed(tmp_path, reports, npy_blob, side_text):
    ds = data.Dataset("toy", data.Interactions.from_raw(np.array([1]), np.array([1])), {},
                      {"title": np.array(["A (2001)"]), "year": np.array([2001])}, "here")
    out = content.ml100k_text_features(ds, cache_dir=tmp_path, _embedder=_Embedder())
    if npy_blob is not None:
        (tmp_path / "text_features_minilm.npy").write_bytes(npy_blob)
    if side_text is not None:
        (tmp_path / "text_features_minilm.json").write_text(side_text)
    again = content.ml100k_text_features(ds, cache_dir=tmp_path, _embedder=_Embedder())
    np.testing.assert_array_equal(again, out)
    assert any("recomputing" in m for m in reports)
    assert no_temp_files(tmp_path)


def test_load_file_on_hostile_inputs_never_crashes(tmp_path):
    """Every reader, on every kind of damage above: a FormatError or OSError, nothing else."""
    cases = {
        "a.csv": f"1,2,{HUGE}\n".encode(), "b.csv": b"\r".join([b"1,2,3"] * 3),
        "c.csv.gz": gzip.compress(b"1,2,3\n" * 500)[:100], "d.json": b"[" * 50_000,
        "e.libfm": f"1 {HUGE}:nan\n".encode(), "f.json": amazon_line(r="NaN").encode(),
        "g.csv": BOM + b"\xff\n", "h.libfm": b"\x1f\x8b\x08\x00garbage",
    }
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
        try:
            load_file(tmp_path / name)
        except (FormatError, OSError):
            pass
