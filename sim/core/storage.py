"""Where datasets live: a local path, or a URL of any filesystem fsspec knows.

:func:`as_path` turns what a user passes into one of two things:

* a :class:`pathlib.Path` for a plain local path (exactly as before: no extra cost, no
  change of behaviour);
* a :class:`URLPath` for ``scheme://...`` (``file://``, ``memory://``, ``s3://``,
  ``gs://``, ``az://``, ... — any scheme fsspec knows whose package is installed).

A :class:`URLPath` offers the small part of the ``pathlib`` API the pipeline uses
(``/``, ``name``, ``parent``, ``exists``, ``is_dir``, ``iterdir``, ``glob``, ``stat``,
``open``, ``read_text``, ``write_text``, ``mkdir``, ``unlink``, ``resolve``), so code
written for a folder works on an object store, plus ``fs`` (a
:class:`pyarrow.fs.FileSystem`) and ``path`` for pyarrow.  The helpers below
(:func:`read_frame`, :func:`read_table`, :func:`parquet_file`, :func:`write_parquet`,
:func:`replace`, :func:`rmtree`, :func:`copy_file`, :func:`copy_tree`, :func:`upload`)
take either kind.  A URLPath pickles as its URL: a Dask worker reopens the filesystem
itself, so it needs the same fsspec package and credentials as the client.

What "atomic" means on an object store: a PUT of one object is atomic (readers see the
old object or the new one, never a part), so every file is written completely to a
temporary key (``.NAME.tmp-XXXXXXXX`` beside it) and then moved to its final key
(:func:`upload`); on an object store a move is a copy and a delete, so the final key
appears only complete.  A folder of many keys cannot be replaced atomically: a dataset's
``manifest.json`` is its commit marker — written last, removed first when a dataset is
replaced — and every reader refuses a folder without it
(:func:`sim.release.dataset.check_dataset`).  Nothing is ever downloaded or installed at
run time: a scheme whose fsspec package is missing raises :class:`InputError` naming it.
"""
from __future__ import annotations

import fnmatch
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

from sim.core.errors import InputError

__all__ = ["URLPath", "as_path", "is_url", "read_frame", "read_table", "read_schema", "parquet_file",
           "write_parquet", "replace", "rmtree", "copy_file", "copy_tree", "upload", "BACKEND_PACKAGES"]

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")

#: the package that implements an fsspec scheme, named in the error when it is missing
BACKEND_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs",
                    "abfss": "adlfs", "adl": "adlfs", "http": "aiohttp", "https": "aiohttp", "sftp": "paramiko",
                    "ssh": "paramiko", "webdav": "webdav4", "oci": "ocifs", "hf": "huggingface_hub"}


def is_url(x) -> bool:
    """True for a :class:`URLPath` or a string of the form ``scheme://...``."""
    return isinstance(x, URLPath) or (isinstance(x, str) and _URL.match(x) is not None)


def as_path(x):
    """``x`` (a str, a Path or a URLPath) as a :class:`pathlib.Path` when it is a local
    path, or as a :class:`URLPath` when it is a URL with a scheme."""
    if isinstance(x, (Path, URLPath)):
        return x
    if isinstance(x, str) and _URL.match(x):
        return URLPath(x)
    return Path(x)


class _Stat:
    __slots__ = ("st_size",)

    def __init__(self, size):
        self.st_size = int(size)


class URLPath:
    """A file or folder at a URL, opened with fsspec (see the module docstring).

    Attributes: ``url`` (str, as given without a trailing ``/``), ``protocol``,
    ``fsspec`` (the fsspec filesystem), ``path`` (the filesystem's path of it),
    ``fs`` (a :class:`pyarrow.fs.FileSystem` over the same store) and ``is_local``
    (``file://``: the bytes are on this machine).
    """

    __slots__ = ("url", "protocol", "path", "fsspec", "_arrow")

    def __init__(self, url: str, _fs=None, _path: str | None = None):
        url = str(url)
        m = _URL.match(url)
        if m is None:
            raise InputError(f"{url!r} is not a URL (scheme://...); give a local path or a URL.")
        self.protocol = m.group(1).lower()
        self.url = url.rstrip("/") if len(url) > len(m.group(0)) + 1 else url
        self._arrow = None
        if _fs is None:
            _fs, _path = _open_fs(self.url, self.protocol)
        self.fsspec, self.path = _fs, _path.rstrip("/") or _path

    # ------------------------------------------------------------ names
    def __truediv__(self, name) -> "URLPath":
        name = str(name).strip("/")
        return URLPath(f"{self.url}/{name}", self.fsspec, f"{self.path.rstrip('/')}/{name}")

    def joinpath(self, *names) -> "URLPath":
        p = self
        for n in names:
            p = p / n
        return p

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        return Path(self.name).suffix

    @property
    def stem(self) -> str:
        return Path(self.name).stem

    @property
    def parent(self) -> "URLPath":
        head = self.url.rsplit("/", 1)[0]
        if head.endswith(":/") or head.endswith("://"):
            return self  # the root of the store
        return URLPath(head, self.fsspec, self.path.rsplit("/", 1)[0] or "/")

    def with_name(self, name: str) -> "URLPath":
        return self.parent / name

    def with_suffix(self, suffix: str) -> "URLPath":
        return self.with_name(Path(self.name).with_suffix(suffix).name)

    @property
    def is_local(self) -> bool:
        return self.protocol in ("file", "local")

    @property
    def fs(self):
        """A pyarrow FileSystem over this URL's store (native for ``file://``; fsspec
        wrapped in ``PyFileSystem(FSSpecHandler(...))`` otherwise)."""
        if self._arrow is None:
            import pyarrow.fs as pafs

            self._arrow = (pafs.LocalFileSystem() if self.is_local
                           else pafs.PyFileSystem(pafs.FSSpecHandler(self.fsspec)))
        return self._arrow

    def resolve(self) -> "URLPath":
        return self

    absolute = resolve

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"URLPath({self.url!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, URLPath) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    def __lt__(self, other) -> bool:
        return self.url < str(other)

    def __reduce__(self):
        return (URLPath, (self.url,))

    # ------------------------------------------------------------ queries
    def exists(self) -> bool:
        return bool(self.fsspec.exists(self.path))

    def is_dir(self) -> bool:
        return bool(self.fsspec.isdir(self.path))

    def is_file(self) -> bool:
        return bool(self.fsspec.isfile(self.path))

    def stat(self) -> _Stat:
        return _Stat(self.fsspec.size(self.path))

    def iterdir(self):
        """The entries directly inside this folder (none when it does not exist)."""
        self.fsspec.invalidate_cache(self.path)  # other processes (workers) may have written
        try:
            names = self.fsspec.ls(self.path, detail=False)
        except FileNotFoundError:
            return iter(())
        own = self.path.rstrip("/")
        kids = sorted({n.rstrip("/").rsplit("/", 1)[-1] for n in names if n.rstrip("/") != own})
        return iter([self / k for k in kids if k])

    def glob(self, pattern: str):
        """Entries of this folder whose name matches ``pattern`` (one level only)."""
        if "/" in pattern:
            raise ValueError("URLPath.glob matches names in one folder only")
        return iter([e for e in self.iterdir() if fnmatch.fnmatchcase(e.name, pattern)])

    # ------------------------------------------------------------ I/O
    def open(self, mode: str = "rb", **kw):
        return self.fsspec.open(self.path, mode, **kw)

    def read_bytes(self) -> bytes:
        return self.fsspec.cat_file(self.path)

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> None:
        """Write ``data`` to a temporary key, then move it to this one (atomic)."""
        write_bytes_atomic(self, data)

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        write_bytes_atomic(self, text.encode(encoding))

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Create the folder (a no-op on object stores, whose folders are key prefixes)."""
        if not exist_ok and self.exists():
            raise FileExistsError(self.url)
        self.fsspec.makedirs(self.path, exist_ok=True)

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self.fsspec.rm_file(self.path)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def rmdir(self) -> None:
        """Remove the (empty) folder; a no-op where folders are only key prefixes."""
        try:
            self.fsspec.rmdir(self.path)
        except (FileNotFoundError, NotImplementedError, OSError):
            pass


def _open_fs(url: str, protocol: str):
    import fsspec
    import fsspec.core

    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as e:
        pkg = BACKEND_PACKAGES.get(protocol)
        what = f"the package {pkg!r}" if pkg else "its fsspec implementation"
        raise InputError(
            f"{url!r} needs {what} for {protocol}:// URLs, which is not installed ({e}); install it "
            f"(e.g. `pip install {pkg or 'PACKAGE'}`) on this machine and on every Dask worker, or use a "
            "local path. reidsim never downloads anything at run time.") from None
    except ValueError as e:
        if protocol not in fsspec.available_protocols():
            raise InputError(
                f"{url!r} has the URL scheme {protocol}://, which fsspec does not know; give a local path or a "
                "URL such as file:///data/ds, s3://bucket/ds, gs://bucket/ds or memory://ds.") from None
        raise InputError(f"could not open {url!r}: {e}") from e


# ---------------------------------------------------------------- Parquet through pyarrow
def read_frame(p, columns=None, reader=None, *, low_memory: bool = False):
    """``reader(p, columns=columns)`` (default :func:`pandas.read_parquet`; e.g.
    ``geopandas.read_parquet``) on a local path, or through the URL's filesystem.
    ``low_memory`` (pandas' reader only): each Arrow column is freed as soon as it is
    converted (``self_destruct``, one block per column), so a large table is not held
    twice while it is read (10 M persons: the read's peak 1.8 -> 1.4 GB); same values."""
    kw = {} if columns is None else {"columns": columns}
    if reader is None:
        import pandas as pd

        reader = pd.read_parquet
        if low_memory:
            kw["to_pandas_kwargs"] = {"self_destruct": True, "split_blocks": True}
    if isinstance(p, URLPath):
        return reader(p.path, filesystem=p.fs, **kw)
    return reader(p, **kw)


def read_table(p, **kw):
    """:func:`pyarrow.parquet.read_table` of a file or folder at ``p`` (local or URL)."""
    import pyarrow.parquet as pq

    if isinstance(p, URLPath):
        return pq.read_table(p.path, filesystem=p.fs, **kw)
    return pq.read_table(p, **kw)


def read_schema(p):
    """:func:`pyarrow.parquet.read_schema` of the file at ``p`` (local or URL)."""
    import pyarrow.parquet as pq

    if isinstance(p, URLPath):
        return pq.read_schema(p.path, filesystem=p.fs)
    return pq.read_schema(p)


def parquet_file(p):
    """A :class:`pyarrow.parquet.ParquetFile` of the file at ``p`` (local or URL)."""
    import pyarrow.parquet as pq

    if isinstance(p, URLPath):
        return pq.ParquetFile(p.path, filesystem=p.fs)
    return pq.ParquetFile(p)


def write_parquet(table, p, **kw) -> None:
    """:func:`pyarrow.parquet.write_table` to ``p`` (local or URL) — directly, not
    atomically: for files inside a staging folder.  Use
    :func:`sim.core.files.atomic_path` for anything a reader may see."""
    import pyarrow.parquet as pq

    if isinstance(p, URLPath):
        pq.write_table(table, p.path, filesystem=p.fs, **kw)
    else:
        pq.write_table(table, p, **kw)


# ---------------------------------------------------------------- moving and removing
def _tmp_sibling(p: URLPath) -> URLPath:
    return p.with_name(f".{p.name}.tmp-{uuid.uuid4().hex[:8]}")


def _via_tmp(dst: URLPath, write) -> None:
    """``write(key)`` to a temporary key beside ``dst``, then move it onto ``dst``, so
    ``dst`` holds either its old bytes or the complete new ones; the temporary key is
    removed on failure."""
    tmp = _tmp_sibling(dst)
    try:
        write(tmp.path)
        dst.fsspec.mv(tmp.path, dst.path)
    finally:
        if tmp.fsspec.exists(tmp.path):
            tmp.unlink(missing_ok=True)
    dst.fsspec.invalidate_cache(dst.parent.path)


def upload(local, dst: URLPath) -> None:
    """Copy the local file ``local`` to the URL ``dst`` atomically (:func:`_via_tmp`)."""
    _via_tmp(dst, lambda key: dst.fsspec.put_file(str(local), key))


def write_bytes_atomic(p: URLPath, data: bytes) -> None:
    """Write ``data`` to the URL ``p`` atomically (:func:`_via_tmp`).  Local files:
    :func:`sim.core.files.atomic_path`."""
    _via_tmp(p, lambda key: p.fsspec.pipe_file(key, data))


def _files_under(p: URLPath) -> list:
    """Every file key under the folder ``p``, relative to it."""
    p.fsspec.invalidate_cache(p.path)
    root = p.path.rstrip("/") + "/"
    return sorted(f[len(root):] for f in p.fsspec.find(p.path) if f.startswith(root))


def replace(src, dst) -> None:
    """Move the file or folder ``src`` onto ``dst`` (same kind of location), replacing
    it.  Local: :func:`os.replace`.  URL: ``dst`` is removed first, then every key of
    ``src`` is moved (on an object store: copied and deleted, key by key)."""
    if not isinstance(src, URLPath) and not isinstance(dst, URLPath):
        os.replace(src, dst)
        return
    if not (isinstance(src, URLPath) and isinstance(dst, URLPath)):
        raise ValueError("replace moves within one filesystem; use copy_tree across filesystems")
    if src.is_local and dst.is_local:  # file://: a rename, as for a local path
        if dst.is_dir():
            rmtree(dst)
        os.replace(src.path, dst.path)
    elif src.is_dir():
        rmtree(dst)
        for rel in _files_under(src):
            target = f"{dst.path}/{rel}"
            dst.fsspec.makedirs(target.rsplit("/", 1)[0], exist_ok=True)  # no-op on object stores
            src.fsspec.mv(f"{src.path}/{rel}", target)
        src.rmdir()
    else:
        if dst.is_dir():
            rmtree(dst)
        src.fsspec.mv(src.path, dst.path)
    dst.fsspec.invalidate_cache(dst.parent.path)


def rmtree(p) -> None:
    """Remove the file or folder ``p`` (local or URL) if it exists; errors ignored."""
    p = as_path(p)
    if isinstance(p, URLPath):
        try:
            if p.fsspec.exists(p.path):
                p.fsspec.rm(p.path, recursive=True)
        except (FileNotFoundError, OSError):
            pass
        p.fsspec.invalidate_cache(p.parent.path)
        return
    if p.is_dir():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists():
        p.unlink(missing_ok=True)


def copy_file(src, dst) -> None:
    """Copy a file between any two locations (local or URL).  A URL ``dst`` is written
    atomically (:func:`upload`); a local one directly, so copy into a staging folder."""
    src, dst = as_path(src), as_path(dst)
    if not isinstance(src, URLPath) and not isinstance(dst, URLPath):
        shutil.copy2(src, dst)
    elif not isinstance(src, URLPath):
        upload(src, dst)
    elif not isinstance(dst, URLPath):
        dst.parent.mkdir(parents=True, exist_ok=True)
        with src.open("rb") as fi, open(dst, "wb") as fo:
            shutil.copyfileobj(fi, fo, 1 << 22)
    else:
        with tempfile.TemporaryDirectory(prefix="reidsim-copy-") as td:
            local = Path(td) / "part"
            copy_file(src, local)
            upload(local, dst)


def copy_tree(src, dst) -> None:
    """Copy the folder ``src`` into ``dst`` (which must not exist yet), between any two
    locations."""
    src, dst = as_path(src), as_path(dst)
    if not isinstance(src, URLPath) and not isinstance(dst, URLPath):
        shutil.copytree(src, dst)
        return
    rels = (_files_under(src) if isinstance(src, URLPath)
            else sorted(str(f.relative_to(src)) for f in src.rglob("*") if f.is_file()))
    dst.mkdir(parents=True, exist_ok=True)
    for rel in rels:
        d = dst.joinpath(*rel.split("/"))
        if not isinstance(d, URLPath):
            d.parent.mkdir(parents=True, exist_ok=True)
        copy_file(src.joinpath(*rel.split("/")), d)
