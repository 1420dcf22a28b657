"""Airflow's object storage (`airflow.sdk.ObjectStoragePath`, `airflow.sdk.io.attach`), as Airflow
3.2's task SDK defines it.

A path is built without I/O and without any package: `ObjectStoragePath("s3://aws_default@bucket/")`
names the Connection `aws_default` in its user info (as Airflow parses it), a plain path or a
`file://` URL is local. Its algebra (`/`, `joinpath`, `name`, `parent`, `parts`, `key`, `bucket`,
`str()`, `==`, ...) gives what Airflow's (built on universal_pathlib) gives.

Its I/O goes to the local file system natively for local and `file://` paths, and through fsspec
for any other scheme, as Airflow's does: fsspec (and the scheme's own package, s3fs for `s3://`)
must then be installed, else the call fails naming them. Where Airflow takes the filesystem from
a provider, Leoflow builds the same options from the Connection named by `conn_id` for the
schemes of the Amazon (`s3`), Google (`gs`, `gcs`) and Azure (`abfs`, `abfss`, `adl`) providers;
what only the provider's hook can do (assuming a role, secrets backends) is an error saying so.

As an XCom, a path is Airflow's serialized form: `{"__classname__":
"airflow.sdk.io.path.ObjectStoragePath", "__version__": 1, "__data__": {"path", "conn_id",
"kwargs"}}`, and a task receiving one gets an `ObjectStoragePath` back.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import shutil
import stat as stat_module
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import IO, Any, ClassVar
from urllib.parse import SplitResult, urlsplit

from leoflow.errors import DagDefinitionError

log = logging.getLogger(__name__)

#: The class name Airflow's serializer records for a path (and Airflow 2's, still read).
CLASSNAME = "airflow.sdk.io.path.ObjectStoragePath"
_CLASSNAMES = frozenset({CLASSNAME, "airflow.io.path.ObjectStoragePath"})

# How a scheme's paths look (universal_pathlib's implementations): local paths; paths rooted at
# "/" whose URL host is a storage option (`host`, `port`); memory's, rooted at "/" with the URL
# host as the first segment; URLs; and, for any other scheme, "bucket/key" paths.
_LOCAL = frozenset({"", "file", "local"})
_HOSTED = frozenset({"sftp", "ssh", "ftp", "hdfs", "webhdfs", "smb"})
_HTTP = frozenset({"http", "https"})
#: Object stores whose paths keep a trailing slash in their text and key (a "directory"), as
#: universal_pathlib's Google Cloud Storage and Azure paths do (its S3 paths drop it).
_KEEPS_TRAILING_SLASH = frozenset({"gs", "gcs", "abfs", "abfss", "adl", "az"})

#: The package fsspec needs for a scheme (named when it is missing).
_PACKAGES = {
    "s3": "s3fs", "s3a": "s3fs", "s3n": "s3fs",
    "gs": "gcsfs", "gcs": "gcsfs",
    "abfs": "adlfs", "abfss": "adlfs", "adl": "adlfs", "az": "adlfs",
    "http": "aiohttp", "https": "aiohttp",
    "sftp": "paramiko", "ssh": "paramiko",
    "hdfs": "pyarrow", "webhdfs": "requests", "smb": "smbprotocol",
    "hf": "huggingface_hub", "oci": "ocifs", "webdav": "webdav4",
}


def _family(protocol: str) -> str:
    if protocol in _LOCAL:
        return "local"
    if protocol in _HOSTED:
        return "hosted"
    if protocol == "memory":
        return "memory"
    if protocol in _HTTP:
        return "http"
    return "bucket"


def _text(value: Any) -> str:
    """A path argument as text (fsspec's `stringify_path`)."""
    if isinstance(value, ObjectStoragePath):
        return str(value)
    if isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        text = os.fspath(value)
        return text.decode() if isinstance(text, bytes) else text
    raise TypeError(f"a path must be a str or an os.PathLike, not {type(value).__name__}")


def _bucket_path(rest: str) -> str:
    """A "bucket/key" path: no leading slash, no trailing slash but the bucket's own."""
    rest = rest.lstrip("/")
    stripped = rest.rstrip("/")
    if not stripped:
        return ""
    return stripped if "/" in stripped else stripped + "/"


def _posix(path: str) -> str:
    return str(PurePosixPath(path))


def _absolute_local(path: str) -> str:
    """A `file://` URL's path: relative to the working directory when not absolute (fsspec's)."""
    if not path.startswith("/"):
        path = posixpath.join(os.getcwd().replace(os.sep, "/"), path)
    return _posix(path)


def _missing(path: Any, protocol: str, package: str) -> ImportError:
    """The error of I/O on `path` without `package` (fsspec, or the scheme's own)."""
    if protocol in _LOCAL:
        message = (
            f"{path}: its fsspec filesystem (`.fs`, and the operations that use it) needs the fsspec package, "
            "which the Python running this task does not have: add fsspec to the project's leoflow.yaml "
            "`dependencies` (reading and writing local paths does not need it)"
        )
    else:
        extra = _PACKAGES.get(protocol)
        if package == "fsspec" and extra:
            needs, names = f"the fsspec package (and {extra} for {protocol}://)", f"fsspec and {extra}"
        elif package == "fsspec":
            needs, names = "the fsspec package", "fsspec"
        else:
            needs, names = f"the {package} package (fsspec's implementation of {protocol}://)", package
        message = (
            f"{path}: {protocol}:// paths are read and written through {needs}, which the Python running this "
            f"task does not have: add {names} to the project's leoflow.yaml `dependencies` (local and file:// "
            "paths need neither)"
        )
    error = ImportError(message)
    error.name = package
    return error


def _import_fsspec(path: Any, protocol: str) -> Any:
    try:
        import fsspec
    except ImportError:
        raise _missing(path, protocol, "fsspec") from None
    return fsspec


# --------------------------------------------------------------------------------------------
# Paths


class ObjectStoragePath:
    """A path-like object for object storage (Airflow's `airflow.sdk.ObjectStoragePath`)."""

    __version__: ClassVar[int] = 1

    sep: ClassVar[str] = "/"
    root_marker: ClassVar[str] = "/"

    __slots__ = ("_protocol", "_conn_id", "_path", "_options", "_trailing")

    _protocol: str
    _conn_id: str | None
    _path: str
    _options: dict[str, Any]
    #: Whether the path's text ends with a slash its filesystem path does not have.
    _trailing: bool

    def __init__(self, *args: Any, protocol: str | None = None, conn_id: str | None = None, **storage_options: Any) -> None:
        options = dict(storage_options)
        # Airflow's precedence for the Connection: a URL's user info (even empty), else
        # `conn_id=`, else the one of the path given.
        url_conn: tuple[str | None] | None = None
        given: ObjectStoragePath | None = None
        text = "."
        if args:
            first = args[0]
            if isinstance(first, ObjectStoragePath):
                given = first
                options = {**first._options, **options}
                if protocol and first._protocol and protocol != first._protocol:
                    raise ValueError(f"the protocol {protocol!r} does not match the path {str(first)!r}")
                protocol = protocol or first._protocol
            else:
                text = _text(first)
                parsed = urlsplit(text)
                userinfo, at, hostinfo = parsed.netloc.rpartition("@")
                if at:
                    url_conn = (userinfo or None,)
                    text = parsed._replace(netloc=hostinfo).geturl()
                protocol = protocol or parsed.scheme
        if url_conn is not None:
            self._conn_id = url_conn[0]
        elif conn_id is not None:
            self._conn_id = conn_id
        else:
            self._conn_id = given._conn_id if given is not None else None
        self._protocol = protocol or ""
        if given is not None and given._protocol == self._protocol:
            self._path, self._trailing = given._path, given._trailing
        else:
            self._path = self._parse(given._path if given is not None else text, options)
            self._trailing = self._keeps_slash(text if given is None else "")
        self._options = options
        for segment in args[1:]:
            self._path = self._joined(self._path, segment)
            self._trailing = self._keeps_slash(segment)

    def _keeps_slash(self, segment: Any) -> bool:
        """Whether a path ending with `segment` keeps a trailing slash (an empty segment adds one)."""
        if self._protocol not in _KEEPS_TRAILING_SLASH or isinstance(segment, ObjectStoragePath):
            return False
        text = _text(segment)
        return (not text or text.endswith("/")) and not self._path.endswith("/")

    def _parse(self, text: str, options: dict[str, Any]) -> str:
        """`text` (a URL of this path's protocol, or a path of its filesystem) as the path its
        filesystem uses (`.path`)."""
        protocol, family = self._protocol, _family(self._protocol)
        parsed = urlsplit(text)
        scheme = parsed.scheme
        if scheme and len(scheme) > 1 and scheme != protocol and protocol:
            raise ValueError(f"the protocol {protocol!r} does not match the path {text!r}")
        if not protocol:
            return _posix(text) if text else "."
        has_url = bool(scheme) and scheme == protocol
        if family == "local":
            if has_url:
                return _absolute_local(parsed.netloc + parsed.path)
            return _absolute_local(text)
        if family == "hosted":
            if has_url:
                if parsed.hostname and "host" not in options:
                    options["host"] = parsed.hostname
                if parsed.port is not None and "port" not in options:
                    options["port"] = parsed.port
                return _posix("/" + parsed.path.lstrip("/"))
            return _posix("/" + text.lstrip("/"))
        if family == "memory":
            rest = parsed.netloc + parsed.path if has_url else text
            return _posix("/" + rest.strip("/"))
        if family == "http":
            if not has_url:
                raise ValueError(f"an {protocol} path must be a URL, not {text!r}")
            url = parsed.geturl()
            return url if parsed.path not in ("", "/") else url.rstrip("/") + "/"
        if has_url:
            rest = text.split("://", 1)[1] if "://" in text else text[len(scheme) + 1:]
        else:
            rest = text
        return _bucket_path(rest)

    def _joined(self, path: str, segment: Any) -> str:
        family = _family(self._protocol)
        piece = segment.path if isinstance(segment, ObjectStoragePath) else _text(segment)
        if family in ("local", "hosted", "memory"):
            joined = str(PurePosixPath(path).joinpath(piece))
            if family == "local" and self._protocol:
                return _absolute_local(joined)
            return joined
        if not piece:
            return path
        base = path if path.endswith("/") else path + "/"
        if family == "http":
            return (base + piece).rstrip("/") if piece.strip("/") else base
        return _bucket_path(base + piece) if (base + piece).strip("/") else ""

    def _with_path(self, path: str) -> ObjectStoragePath:
        """This path's store with another path of its filesystem."""
        result = object.__new__(type(self))
        result._protocol = self._protocol
        result._conn_id = self._conn_id
        result._options = dict(self._options)
        result._trailing = False
        family = _family(self._protocol)
        if family == "bucket":
            result._path = _bucket_path(path)
        elif family == "http":
            result._path = path
        elif family == "local":
            result._path = (_absolute_local(path) if self._protocol else _posix(path)) if path else "."
        else:
            result._path = _posix("/" + path.lstrip("/"))
        return result

    # ---- what it is -----------------------------------------------------------------------

    @property
    def protocol(self) -> str:
        return self._protocol

    @property
    def conn_id(self) -> str | None:
        """The Connection this path's filesystem is built from."""
        return self._conn_id

    @property
    def storage_options(self) -> Mapping[str, Any]:
        """The filesystem's options given to the path (with a hosted URL's `host` and `port`)."""
        return MappingProxyType(self._options)

    @property
    def path(self) -> str:
        """The path as its filesystem names it (`bucket/key` for object stores)."""
        return self._path

    def _plain(self) -> str:
        """The path as text without its Connection."""
        protocol, family = self._protocol, _family(self._protocol)
        if not protocol or family == "http":
            return self._path
        if family == "memory":
            return f"{protocol}://{self._path.lstrip('/')}"
        return f"{protocol}://{self._path}{'/' if self._trailing else ''}"

    def __str__(self) -> str:
        if self._protocol and self._conn_id:
            if _family(self._protocol) == "http":
                scheme, rest = self._path.split("://", 1)
                return f"{scheme}://{self._conn_id}@{rest}"
            # Airflow's: the filesystem's path (so without a kept trailing slash).
            return f"{self._protocol}://{self._conn_id}@{self._path}"
        return self._plain()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._path!r}, protocol={self._protocol!r})"

    @property
    def _url(self) -> SplitResult:
        return urlsplit(self._plain())

    @property
    def bucket(self) -> str:
        return self._url.netloc

    @property
    def container(self) -> str:
        return self.bucket

    @property
    def key(self) -> str:
        """The path within its bucket, without a leading slash."""
        return self._url.path.lstrip(self.sep)

    @property
    def namespace(self) -> str:
        return f"{self._protocol}://{self.bucket}" if self.bucket else self._protocol

    def __hash__(self) -> int:
        return hash(str(self))

    def __eq__(self, other: object) -> bool:
        return self.samestore(other) and str(self) == str(other)

    def samestore(self, other: Any) -> bool:
        return isinstance(other, ObjectStoragePath) and self._protocol == other._protocol and self._conn_id == other._conn_id

    def _order(self, other: object) -> tuple[str, str] | None:
        if not isinstance(other, ObjectStoragePath) or self._protocol != other._protocol:
            return None
        return self._plain(), other._plain()

    def __lt__(self, other: object) -> bool:
        pair = self._order(other)
        return NotImplemented if pair is None else pair[0] < pair[1]

    def __le__(self, other: object) -> bool:
        pair = self._order(other)
        return NotImplemented if pair is None else pair[0] <= pair[1]

    def __gt__(self, other: object) -> bool:
        pair = self._order(other)
        return NotImplemented if pair is None else pair[0] > pair[1]

    def __ge__(self, other: object) -> bool:
        pair = self._order(other)
        return NotImplemented if pair is None else pair[0] >= pair[1]

    def __reduce__(self) -> tuple[Any, ...]:
        return _restore, (self.serialize(),)

    # ---- algebra ---------------------------------------------------------------------------

    @property
    def parts(self) -> tuple[str, ...]:
        family = _family(self._protocol)
        if family in ("local", "hosted", "memory"):
            return PurePosixPath(self._path).parts
        if not self._path:
            return ()
        anchor = self.anchor
        return (anchor, *[s for s in self._path[len(anchor):].split("/") if s])

    @property
    def anchor(self) -> str:
        family = _family(self._protocol)
        if family in ("local", "hosted", "memory"):
            return PurePosixPath(self._path).anchor
        if family == "http":
            scheme, rest = self._path.split("://", 1)
            return f"{scheme}://{rest.split('/', 1)[0]}/"
        return self._path.split("/", 1)[0] + "/" if self._path else ""

    @property
    def drive(self) -> str:
        family = _family(self._protocol)
        if family in ("local", "hosted", "memory"):
            return ""
        return self.anchor.rstrip("/")

    @property
    def root(self) -> str:
        return self.sep if self.anchor else ""

    @property
    def name(self) -> str:
        parts = self.parts
        if _family(self._protocol) in ("bucket", "http"):
            return parts[-1] if len(parts) > 1 else ""
        return PurePosixPath(self._path).name

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix if self.name else ""

    @property
    def suffixes(self) -> list[str]:
        return PurePosixPath(self.name).suffixes if self.name else []

    @property
    def stem(self) -> str:
        return PurePosixPath(self.name).stem if self.name else ""

    @property
    def parent(self) -> ObjectStoragePath:
        family = _family(self._protocol)
        if family in ("local", "hosted", "memory"):
            return self._with_path(str(PurePosixPath(self._path).parent))
        parts = self.parts
        if len(parts) <= 1:
            return self
        return self._with_path(parts[0] + "/".join(parts[1:-1]))

    @property
    def parents(self) -> list[ObjectStoragePath]:
        if _family(self._protocol) in ("bucket", "http") and len(self.parts) == 1:
            return [self]  # as universal_pathlib's: a bucket is its own parent
        result: list[ObjectStoragePath] = []
        current = self
        while True:
            parent = current.parent
            if parent._path == current._path:
                return result
            result.append(parent)
            current = parent

    def joinpath(self, *pathsegments: Any) -> ObjectStoragePath:
        path = self._path
        for segment in pathsegments:
            path = self._joined(path, segment)
        result = self._with_path(path)
        if pathsegments:
            result._trailing = result._keeps_slash(pathsegments[-1])
        else:
            result._trailing = self._trailing
        return result

    def with_segments(self, *pathsegments: Any) -> ObjectStoragePath:
        return type(self)(*pathsegments, protocol=self._protocol or None, conn_id=self._conn_id, **self._options)

    def __truediv__(self, key: Any) -> ObjectStoragePath:
        try:
            return self.joinpath(key)
        except TypeError:
            return NotImplemented

    def with_name(self, name: str) -> ObjectStoragePath:
        if not name or "/" in name:
            raise ValueError(f"invalid name {name!r}")
        family = _family(self._protocol)
        if family in ("local", "hosted", "memory"):
            if not self.name:
                if not self._protocol:
                    raise ValueError(f"{self!r} has an empty name")
                return self.joinpath(name)  # universal_pathlib's, for a URL's root
            return self._with_path(str(PurePosixPath(self._path).with_name(name)))
        return self.parent.joinpath(name)

    def with_stem(self, stem: str) -> ObjectStoragePath:
        return self.with_name(stem + self.suffix)

    def with_suffix(self, suffix: str) -> ObjectStoragePath:
        if suffix and (not suffix.startswith(".") or suffix == "." or "/" in suffix):
            raise ValueError(f"Invalid suffix {suffix!r}")
        if not self.name:
            raise ValueError(f"{self!r} has an empty name")
        return self.with_name(str(PurePosixPath(self.name).with_suffix(suffix)))

    def match(self, pattern: str) -> bool:
        return PurePosixPath(self._path).match(pattern)

    def is_absolute(self) -> bool:
        return PurePosixPath(self._path).is_absolute() if not self._protocol else True

    def as_posix(self) -> str:
        return self._plain()

    def as_uri(self) -> str:
        if not self._protocol:
            if not self.is_absolute():
                raise ValueError("relative path can't be expressed as a file URI")
            return Path(self._path).as_uri()
        return self._plain()

    def is_relative_to(self, other: Any) -> bool:
        other_path = other if isinstance(other, ObjectStoragePath) else type(self)(other, protocol=self._protocol or None)
        if other_path._protocol != self._protocol:
            return False
        mine, theirs = self.parts, other_path.parts
        return mine[: len(theirs)] == theirs

    def relative_to(self, other: Any) -> ObjectStoragePath:
        if self._protocol:
            raise NotImplementedError(f"fsspec paths can not be relative: {self!r}")
        base = other.path if isinstance(other, ObjectStoragePath) else _text(other)
        return type(self)(str(PurePosixPath(self._path).relative_to(base)))

    def absolute(self) -> ObjectStoragePath:
        if self._protocol:
            return self
        return self._with_path(str(Path(self._path).absolute()))

    def resolve(self, strict: bool = False) -> ObjectStoragePath:
        if _family(self._protocol) == "local":
            return self._with_path(str(Path(self._path).resolve(strict=strict)))
        parts = list(self.parts)
        if not parts:
            return self
        resolved: list[str] = []
        for part in parts[1:]:
            if part == "..":
                if resolved:
                    resolved.pop()
            elif part != ".":
                resolved.append(part)
        return self._with_path(parts[0] + "/".join(resolved))

    def expanduser(self) -> ObjectStoragePath:
        return self._with_path(os.path.expanduser(self._path)) if not self._protocol else self

    @classmethod
    def cwd(cls) -> ObjectStoragePath:
        return cls(os.getcwd())

    @classmethod
    def home(cls) -> ObjectStoragePath:
        return cls(os.path.expanduser("~"))

    # ---- serialization ---------------------------------------------------------------------

    def serialize(self) -> dict[str, Any]:
        """Airflow's serialized form (the `__data__` of the XCom)."""
        return {"path": str(self), "conn_id": self._conn_id, "kwargs": dict(self._options)}

    @classmethod
    def deserialize(cls, data: dict[str, Any], version: int) -> ObjectStoragePath:
        if version > cls.__version__:
            raise ValueError(f"Cannot deserialize version {version} with version {cls.__version__}.")
        data = dict(data)
        kwargs = dict(data.pop("kwargs", None) or {})
        path = data.pop("path")
        conn_id = data.pop("conn_id", None)
        return cls(path, conn_id=conn_id, **kwargs)

    def xcom_value(self) -> dict[str, Any]:
        """The path as Airflow's serializer stores it in an XCom."""
        return {"__classname__": CLASSNAME, "__version__": self.__version__, "__data__": self.serialize()}

    # ---- the filesystem --------------------------------------------------------------------

    @property
    def _local(self) -> bool:
        return self._protocol in _LOCAL

    @property
    def fs(self) -> Any:
        """The fsspec filesystem of this path (built from its Connection, as Airflow's `attach`)."""
        protocol = self._protocol or "file"
        if self._options:
            return get_fs(protocol, self._conn_id, self._options, path=self)
        return attach(protocol, self._conn_id).filesystem(self)

    def open(self, mode: str = "r", **kwargs: Any) -> IO[Any]:
        """Opens the file this path names: natively when local, else with its filesystem."""
        if self._local and not set(kwargs) - {"buffering", "block_size", "encoding", "errors", "newline"}:
            buffering = kwargs.pop("buffering", None)
            block_size = kwargs.pop("block_size", None)
            buffering = buffering if buffering is not None else block_size
            return open(self._path, mode, -1 if buffering is None else buffering, **kwargs)
        # fsspec's own options (compression, cache_type, ...) need its filesystem, a local one too.
        kwargs.setdefault("block_size", kwargs.pop("buffering", None))
        file: IO[Any] = self.fs.open(self._path, mode=mode, **kwargs)
        return file

    def read_bytes(self) -> bytes:
        with self.open("rb") as file:
            data: bytes = file.read()
            return data

    def read_text(self, encoding: str | None = None, errors: str | None = None, newline: str | None = None) -> str:
        with self.open("r", encoding=encoding, errors=errors, newline=newline) as file:
            text: str = file.read()
            return text

    def write_bytes(self, data: bytes) -> int:
        view = memoryview(data)
        with self.open("wb") as file:
            file.write(view)
        return view.nbytes

    def write_text(self, data: str, encoding: str | None = None, errors: str | None = None, newline: str | None = None) -> int:
        if not isinstance(data, str):
            raise TypeError(f"data must be str, not {type(data).__name__}")
        with self.open("w", encoding=encoding, errors=errors, newline=newline) as file:
            return int(file.write(data))

    def exists(self, *, follow_symlinks: bool = True) -> bool:
        if self._local:
            return os.path.exists(self._path) if follow_symlinks else os.path.lexists(self._path)
        return bool(self.fs.exists(self._path))

    def is_dir(self, *, follow_symlinks: bool = True) -> bool:
        if self._local:
            return os.path.isdir(self._path)
        return bool(self.fs.isdir(self._path))

    def is_file(self, *, follow_symlinks: bool = True) -> bool:
        if self._local:
            return os.path.isfile(self._path)
        return bool(self.fs.isfile(self._path))

    def is_symlink(self) -> bool:
        return os.path.islink(self._path) if self._local else False

    def mkdir(self, mode: int = 0o777, parents: bool = False, exist_ok: bool = False) -> None:
        if self._local:
            Path(self._path).mkdir(mode, parents, exist_ok)
            return
        if parents and not exist_ok and self.exists():
            raise FileExistsError(str(self))
        try:
            self.fs.mkdir(self._path, create_parents=parents, mode=mode)
        except FileExistsError:
            if not exist_ok or not self.is_dir():
                raise FileExistsError(str(self)) from None

    def touch(self, mode: int = 0o666, exist_ok: bool = True) -> None:
        if self._local:
            Path(self._path).touch(mode, exist_ok)
            return
        exists = self.fs.exists(self._path)
        if exists and not exist_ok:
            raise FileExistsError(str(self))
        try:
            self.fs.touch(self._path, truncate=not exists)
        except (NotImplementedError, ValueError):
            if not exists:
                raise

    def unlink(self, missing_ok: bool = False) -> None:
        if self._local:
            Path(self._path).unlink(missing_ok)
            return
        if not self.exists():
            if not missing_ok:
                raise FileNotFoundError(str(self))
            return
        self.fs.rm(self._path, recursive=False)

    def rmdir(self, recursive: bool | None = None) -> None:
        """Removes this directory: a plain local path's only when empty unless `recursive=True`
        (pathlib's), any other with its contents unless `recursive=False` (universal_pathlib's)."""
        if recursive is None:
            recursive = bool(self._protocol)
        if self._local:
            if recursive:
                shutil.rmtree(self._path)
            else:
                os.rmdir(self._path)
            return
        if not self.is_dir():
            raise NotADirectoryError(str(self))
        if not recursive and next(self.iterdir(), None) is not None:
            raise OSError(f"Not recursive and directory not empty: {self}")
        self.fs.rm(self._path, recursive=True)

    def iterdir(self) -> Iterator[ObjectStoragePath]:
        if self._local:
            with os.scandir(self._path) as entries:
                names = sorted(entry.name for entry in entries)
            for name in names:
                yield self.joinpath(name)
            return
        fs = self.fs
        if not fs.isdir(self._path):
            fs.invalidate_cache(self._path)
            if not fs.isdir(self._path):
                raise NotADirectoryError(str(self))
        base = self._path.rstrip("/")
        seen: set[str] = set()
        for info in fs.listdir(self._path):
            name = (info["name"] if isinstance(info, dict) else str(info)).rstrip("/")
            if name == base:
                continue
            name = name.rpartition("/")[2]
            if name in (".", "..") or name in seen:
                continue
            seen.add(name)
            yield self._with_path(self._joined(self._path, name))

    def glob(self, pattern: str) -> Iterator[ObjectStoragePath]:
        """The existing paths under this one matching `pattern` (relative, `**` for any depth)."""
        if self._local:
            base = Path(self._path)
            for found in sorted(base.glob(pattern)):
                yield self.joinpath(found.relative_to(base).as_posix())
            return
        yield from self._fs_glob([pattern], pattern.endswith("/"))

    def rglob(self, pattern: str) -> Iterator[ObjectStoragePath]:
        if self._local:
            base = Path(self._path)
            for found in sorted(base.rglob(pattern)):
                yield self.joinpath(found.relative_to(base).as_posix())
            return
        yield from self._fs_glob([pattern, f"**/{pattern}"], pattern.endswith("/"))

    def _fs_glob(self, patterns: list[str], dirs_only: bool) -> Iterator[ObjectStoragePath]:
        fs = self.fs
        base = self._path
        seen: set[str] = set()
        for pattern in patterns:
            found = fs.glob(self._joined(self._path, pattern).rstrip("/"), detail=True)
            for name, info in sorted(found.items()):
                if dirs_only and info.get("type") != "directory":
                    continue
                relative = name.rstrip("/").removeprefix(base).removeprefix("/")
                if relative and relative not in seen:
                    seen.add(relative)
                    yield self.joinpath(relative)

    def walk(
        self, top_down: bool = True, on_error: Callable[[OSError], Any] | None = None, follow_symlinks: bool = False
    ) -> Iterator[tuple[ObjectStoragePath, list[str], list[str]]]:
        if self._local:
            for root, dirnames, filenames in os.walk(self._path, topdown=top_down, onerror=on_error, followlinks=follow_symlinks):
                yield self._with_path(root), dirnames, filenames
            return
        for root, dirnames, filenames in self.fs.walk(self._path, topdown=top_down):
            yield self._with_path(root), list(dirnames), list(filenames)

    def stat(self) -> stat_result:
        """The file's properties (fsspec's `info`), with the store's `protocol` and `conn_id`."""
        info = _local_info(self._path) if self._local else self.fs.stat(self._path)
        return stat_result(info, protocol=self._protocol, conn_id=self._conn_id)

    def lstat(self) -> stat_result:
        return self.stat()

    def size(self) -> int:
        """The size in bytes of the file at this path."""
        if self._local:
            return os.path.getsize(self._path)
        return int(self.fs.size(self._path))

    def samefile(self, other_path: Any) -> bool:
        if not isinstance(other_path, ObjectStoragePath):
            return False
        st, other = self.stat(), other_path.stat()
        return bool(st["protocol"] == other["protocol"] and st["conn_id"] == other["conn_id"] and st["ino"] == other["ino"])

    def ukey(self) -> str:
        """A hash of the file's properties, to tell whether it changed."""
        return str(self.fs.ukey(self._path))

    def checksum(self) -> int:
        return int(self.fs.checksum(self._path))

    def read_block(self, offset: int, length: int, delimiter: bytes | None = None) -> bytes:
        data: bytes = self.fs.read_block(self._path, offset=offset, length=length, delimiter=delimiter)
        return data

    def sign(self, expiration: int = 100, **kwargs: Any) -> str:
        return str(self.fs.sign(self._path, expiration=expiration, **kwargs))

    def rename(self, target: Any) -> ObjectStoragePath:
        """Renames this file or directory to `target` (of this path's store)."""
        destination = self._target(target)
        if destination._protocol != self._protocol:
            raise ValueError(f"expected protocol {self._protocol!r}, got: {destination._protocol!r}")
        if destination == self:
            return self
        if self._local:
            os.rename(self._path, destination._path)
        else:
            self.fs.mv(self._path, destination._path, recursive=self.is_dir())
        return destination

    def replace(self, target: Any) -> ObjectStoragePath:
        return self.rename(target)

    def _target(self, target: Any) -> ObjectStoragePath:
        if isinstance(target, ObjectStoragePath):
            return target
        text = _text(target)
        if "://" in text:
            return type(self)(text, conn_id=self._conn_id)
        if self._local:
            return self._with_path(os.path.abspath(text) if self._protocol else text)
        return self._with_path(text)

    def copy(self, dst: str | ObjectStoragePath, recursive: bool = False, **kwargs: Any) -> None:
        """Copies this file (a directory with `recursive=True`) to `dst`, within a store or across
        stores (the destination key of a remote-to-remote copy is the source's, as Airflow's)."""
        if isinstance(dst, str):
            dst = ObjectStoragePath(dst)
        if self._local and dst._local:
            _copy_local(self._path, dst._path, recursive)
            return
        if self.samestore(dst):
            self.fs.copy(self._path, dst._path, recursive=recursive, **kwargs)
            return
        if self._local:
            dst.fs.put(self._path, dst._path, recursive=recursive, **kwargs)
            return
        if dst._local:
            self.fs.get(self._path, dst._path, recursive=recursive, **kwargs)
            return
        if not self.exists():
            raise FileNotFoundError(f"{self} does not exist")
        if self.is_dir():
            if dst.is_file():
                raise ValueError("Cannot copy directory to a file.")
            dst.mkdir(exist_ok=True, parents=True)
            for path in self.fs.expand_path(self._path, recursive=True):
                if path == self._path:
                    continue
                source = self._with_path(path)
                if not source.is_dir():
                    source._copy_file(dst)
            return
        self._copy_file(dst)

    def _copy_file(self, dst: ObjectStoragePath) -> None:
        """Streams one file to another store (into `dst` when it is a directory)."""
        if dst.key.endswith(self.sep) or not dst.key:
            dst.mkdir(exist_ok=True, parents=True)
            dst = dst / self.key
        elif dst.is_dir():
            dst = dst / self.key
        with self.open("rb") as source, dst.open("wb") as target:
            shutil.copyfileobj(source, target)

    def copy_into(self, target_dir: str | ObjectStoragePath, recursive: bool = False, **kwargs: Any) -> None:
        if isinstance(target_dir, str):
            target_dir = ObjectStoragePath(target_dir)
        if not target_dir.is_dir():
            raise NotADirectoryError(f"Destination {target_dir} is not a directory.")
        self.copy(target_dir / self.name, recursive=recursive, **kwargs)

    def move(self, path: str | ObjectStoragePath, recursive: bool = False, **kwargs: Any) -> None:
        """Moves this file (a directory with `recursive=True`) to `path`."""
        if isinstance(path, str):
            path = ObjectStoragePath(path)
        if self._local and path._local:
            shutil.move(self._path, path._path)
            return
        if self.samestore(path):
            self.fs.move(self._path, path._path, recursive=recursive, **kwargs)
            return
        directory = self.is_dir()
        self.copy(path, recursive=recursive, **kwargs)
        if directory:
            self.rmdir(recursive=True)
        else:
            self.unlink()

    def move_into(self, target_dir: str | ObjectStoragePath, recursive: bool = False, **kwargs: Any) -> None:
        if isinstance(target_dir, str):
            target_dir = ObjectStoragePath(target_dir)
        if not target_dir.is_dir():
            raise NotADirectoryError(f"Destination {target_dir} is not a directory.")
        self.move(target_dir / self.name, recursive=recursive, **kwargs)


def _restore(data: dict[str, Any]) -> ObjectStoragePath:
    return ObjectStoragePath.deserialize(data, ObjectStoragePath.__version__)


def _copy_local(source: str, target: str, recursive: bool) -> None:
    """fsspec's local copy: a file into an existing directory keeps its name; a directory needs
    `recursive` and lands inside an existing directory."""
    if os.path.isdir(source):
        if not recursive:
            raise IsADirectoryError(f"{source} is a directory: copy it with recursive=True")
        if os.path.isdir(target):
            target = os.path.join(target, os.path.basename(source.rstrip("/")))
        shutil.copytree(source, target, dirs_exist_ok=True)
        return
    if os.path.isdir(target):
        target = os.path.join(target, os.path.basename(source))
    shutil.copyfile(source, target)


def _local_info(path: str) -> dict[str, Any]:
    """fsspec's `LocalFileSystem.info` of a local path."""
    result = os.stat(path, follow_symlinks=False)
    link = stat_module.S_ISLNK(result.st_mode)
    if link:
        result = os.stat(path, follow_symlinks=True)
    kind = "directory" if stat_module.S_ISDIR(result.st_mode) else "file" if stat_module.S_ISREG(result.st_mode) else "other"
    info: dict[str, Any] = {
        "name": os.path.abspath(path),
        "size": result.st_size,
        "type": kind,
        "created": result.st_ctime,
        "islink": link,
        "mode": result.st_mode,
        "uid": result.st_uid,
        "gid": result.st_gid,
        "mtime": result.st_mtime,
        "ino": result.st_ino,
        "nlink": result.st_nlink,
    }
    if link:
        info["destination"] = os.readlink(path)
    return info


class stat_result(dict[str, Any]):  # noqa: N801 - Airflow's name
    """What `ObjectStoragePath.stat()` returns: the filesystem's properties of the file, with
    `os.stat_result`'s `st_*` attributes (Airflow's `airflow.sdk.io.stat.stat_result`)."""

    @property
    def st_dev(self) -> int:
        return 0

    @property
    def st_size(self) -> Any:
        return self.get("size", 0)

    @property
    def st_gid(self) -> Any:
        return self.get("gid", 0)

    @property
    def st_uid(self) -> Any:
        return self.get("uid", 0)

    @property
    def st_ino(self) -> Any:
        return self.get("ino", 0)

    @property
    def st_nlink(self) -> Any:
        return self.get("nlink", 0)

    @property
    def st_mtime(self) -> Any:
        if "mtime" in self:
            return self.get("mtime")
        if "LastModified" in self:
            return self["LastModified"].timestamp()
        return 0

    @property
    def st_mode(self) -> Any:
        if "mode" in self:
            return self.get("mode")
        mode = 0
        if self.get("type", "") == "file":
            mode = stat_module.S_IFREG
        if self.get("type", "") == "directory":
            mode = stat_module.S_IFDIR
        if self.get("isLink", False):
            mode = stat_module.S_IFLNK
        return mode


# --------------------------------------------------------------------------------------------
# XComs


def revive(value: Any) -> Any:
    """An XCom value with the paths Airflow's serializer recorded in it made paths again."""
    if isinstance(value, list):
        return [revive(item) for item in value]
    if isinstance(value, dict):
        if value.keys() == {"__classname__", "__version__", "__data__"} and value["__classname__"] in _CLASSNAMES:
            data = value["__data__"]
            if isinstance(data, dict) and isinstance(value["__version__"], int):
                return ObjectStoragePath.deserialize(data, value["__version__"])
        return {key: revive(item) for key, item in value.items()}
    return value


# --------------------------------------------------------------------------------------------
# Stores and filesystems


class ObjectStore:
    """A filesystem or object store (Airflow's `airflow.sdk.io.store.ObjectStore`); made by
    `attach`."""

    __version__: ClassVar[int] = 1

    def __init__(self, protocol: str, conn_id: str | None, fs: Any = None, storage_options: dict[str, Any] | None = None) -> None:
        self.protocol = protocol
        self.conn_id = conn_id
        self.storage_options = storage_options
        self._fs = fs

    def filesystem(self, path: Any = None) -> Any:
        if self._fs is None:
            self._fs = get_fs(self.protocol, self.conn_id, self.storage_options, path=path)
        return self._fs

    @property
    def fs(self) -> Any:
        return self.filesystem()

    @property
    def fsid(self) -> str:
        try:
            return str(self.fs.fsid)
        except NotImplementedError:
            return f"{self.fs.protocol}-{self.conn_id or 'env'}"

    def __str__(self) -> str:
        return f"{self.protocol}-{self.conn_id}" if self.conn_id else self.protocol

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ObjectStore):
            return NotImplemented
        if self.conn_id != other.conn_id:
            return False
        try:
            return bool(self.fs == other.fs)
        except ValueError:
            return False

    def __hash__(self) -> int:
        return hash((self.conn_id, self.fsid))


_STORE_CACHE: dict[str, ObjectStore] = {}


def attach(
    protocol: str | None = None,
    conn_id: str | None = None,
    alias: str | None = None,
    encryption_type: str | None = "",
    fs: Any = None,
    **kwargs: Any,
) -> ObjectStore:
    """A filesystem or object store by protocol and Connection (or alias), made once; `fs` gives
    the fsspec filesystem to use for it."""
    if alias:
        if store := _STORE_CACHE.get(alias):
            return store
        if not protocol:
            raise ValueError(f"No registered store with alias: {alias}")
    if not protocol:
        raise ValueError("No protocol specified and no alias provided")
    if not alias:
        alias = f"{protocol}-{conn_id}" if conn_id else protocol
        if store := _STORE_CACHE.get(alias):
            return store
    _STORE_CACHE[alias] = store = ObjectStore(protocol=protocol, conn_id=conn_id, fs=fs, **kwargs)
    return store


#: Schemes whose filesystem options Leoflow builds from a Connection (as the providers do).
CONNECTION_SCHEMES = ("file", "local", "s3", "s3a", "s3n", "gs", "gcs", "abfs", "abfss", "adl")


def has_fs(scheme: str) -> bool:
    """Whether Leoflow builds a filesystem for `scheme` from a Connection (any other scheme
    works through fsspec too, with the options the path gives)."""
    return scheme in CONNECTION_SCHEMES


def get_fs(scheme: str, conn_id: str | None = None, storage_options: Mapping[str, Any] | None = None, *, path: Any = None) -> Any:
    """The fsspec filesystem for `scheme`: its options from the Connection `conn_id` for the
    schemes Airflow's providers serve (`CONNECTION_SCHEMES`), then `storage_options` over them."""
    where = path if path is not None else f"{scheme}://"
    fsspec = _import_fsspec(where, scheme)
    options = dict(storage_options or {})
    if scheme in _LOCAL:
        return fsspec.filesystem("file", **options)
    if scheme in ("s3", "s3a", "s3n"):
        built, target = {**_s3_options(conn_id, where), **options}, "s3"
    elif scheme in ("gs", "gcs"):
        built, target = {**_gcs_options(conn_id, where), **options}, "gcs"
    elif scheme in ("abfs", "abfss", "adl"):
        built, target = {**_azure_options(conn_id, where), **options}, "abfs"
    else:
        if conn_id is not None:
            raise ValueError(
                f"{where}: Leoflow builds a filesystem from a Connection for the schemes {', '.join(CONNECTION_SCHEMES)} "
                f"(in Airflow, {scheme}:// needs the provider that registers it); give the filesystem's options "
                f"as keyword arguments of ObjectStoragePath instead of conn_id {conn_id!r}, or attach(protocol, "
                "conn_id, fs=...) a filesystem of your own"
            )
        built, target = options, scheme
    try:
        return fsspec.filesystem(target, **built)
    except ImportError:
        package = _PACKAGES.get(scheme)
        if package is None:
            raise
        raise _missing(where, scheme, package) from None
    except ValueError as error:
        if "Protocol not known" in str(error):
            raise ValueError(f"{where}: fsspec knows no filesystem for {scheme}://") from None
        raise


def _connection(conn_id: str, where: Any, required: bool) -> Any:
    """The Connection `conn_id` of the running task; None when it does not exist and is not
    `required`."""
    from leoflow import runtime

    context = runtime.current_context
    if context is None:
        raise DagDefinitionError(
            f"{where}: the filesystem of Connection {conn_id!r} is built while a task runs, not while the "
            "DAG file is parsed: do the I/O inside a task"
        )
    try:
        return context["conn"].lookup(conn_id)
    except KeyError:
        if required:
            raise KeyError(f"The conn_id `{conn_id}` isn't defined") from None
        return None


def _needs_provider(where: Any, conn_id: str | None, what: str, provider: str) -> ValueError:
    return ValueError(
        f"{where}: Connection {conn_id!r} uses {what}, which needs Airflow's {provider} provider's hook, "
        "which Leoflow does not run"
    )


def _s3_options(conn_id: str | None, where: Any) -> dict[str, Any]:
    """s3fs's options from an AWS Connection, as the Amazon provider's `S3Hook` reads it; a
    Connection that does not exist means the environment's credentials (as the provider)."""
    conn = _connection(conn_id, where, required=False) if conn_id is not None else None
    if conn_id is not None and conn is None:
        log.warning("Unable to find AWS Connection ID '%s', switching to empty.", conn_id)
    extra: dict[str, Any] = conn.extra_dejson if conn is not None else {}
    session = extra.get("session_kwargs") or {}
    if conn is not None and conn.login and conn.password:
        key, secret = conn.login, conn.password
    elif extra.get("aws_access_key_id") and extra.get("aws_secret_access_key"):
        key, secret = extra["aws_access_key_id"], extra["aws_secret_access_key"]
    else:
        key, secret = session.get("aws_access_key_id"), session.get("aws_secret_access_key")
    token = extra.get("aws_session_token") or session.get("aws_session_token")
    service = (extra.get("service_config") or {}).get("s3") or {}
    if extra.get("role_arn"):
        raise _needs_provider(where, conn_id, "role_arn (assuming a role)", "Amazon")
    if service.get("signer"):
        raise _needs_provider(where, conn_id, "a request signer (service_config.s3.signer)", "Amazon")
    options: dict[str, Any] = {}
    if key and secret:
        options["key"], options["secret"] = key, secret
    if token:
        options["token"] = token
    if extra.get("profile_name"):
        options["profile"] = extra["profile_name"]
    client_kwargs = {name: extra[name] for name in ("region_name", "verify") if extra.get(name) is not None}
    if client_kwargs:
        options["client_kwargs"] = client_kwargs
    endpoint = service.get("endpoint_url", extra.get("endpoint_url"))
    if endpoint:
        options["endpoint_url"] = endpoint
    config_kwargs = dict(extra.get("config_kwargs") or {})
    if config_kwargs.get("signature_version") == "unsigned":
        from botocore import UNSIGNED

        config_kwargs["signature_version"] = UNSIGNED
    if proxy := service.get("proxy-uri"):
        config_kwargs["proxies"] = {"http": proxy, "https": proxy}
    if config_kwargs:
        options["config_kwargs"] = config_kwargs
    if not (key and secret) and "profile" not in options and not _environment_has_aws_credentials():
        # As the provider: without credentials anywhere, the bucket is read anonymously.
        log.info("No credentials found, using anonymous access")
        options["anon"] = True
    return options


def _environment_has_aws_credentials() -> bool:
    try:
        from botocore.session import Session
    except ImportError:
        return True  # s3fs (which needs botocore) reports what is missing
    return Session().get_credentials() is not None


def _gcs_options(conn_id: str | None, where: Any) -> dict[str, Any]:
    """gcsfs's options from a Google Cloud Connection, as the Google provider builds them."""
    if conn_id is None:
        return {}
    conn = _connection(conn_id, where, required=True)
    extras: dict[str, Any] = conn.extra_dejson

    def field(name: str) -> Any:
        return extras[name] if name in extras else extras.get(f"extra__google_cloud_platform__{name}")

    for name in ("key_secret_name", "credential_config_file", "impersonation_chain"):
        if field(name):
            raise _needs_provider(where, conn_id, name, "Google")
    token: Any = "google_default"
    if field("is_anonymous"):
        token = "anon"
    elif field("key_path"):
        token = field("key_path")
    elif field("keyfile_dict"):
        keyfile = field("keyfile_dict")
        token = json.loads(keyfile) if isinstance(keyfile, str) else keyfile
    options: dict[str, Any] = {
        "access": extras.get("gcs.access", "full_control"),
        "token": token,
        "consistency": extras.get("gcs.consistency", "none"),
        "cache_timeout": extras.get("gcs.cache-timeout"),
        "requester_pays": extras.get("gcs.requester-pays", False),
        "session_kwargs": extras.get("gcs.session-kwargs", {}),
        "endpoint_url": extras.get("gcs.endpoint"),
        "default_location": extras.get("gcs.default-bucket-location"),
        "version_aware": str(extras.get("gcs.version-aware", "false")).lower() == "true",
    }
    if field("project"):
        options["project"] = field("project")
    return options


def _azure_options(conn_id: str | None, where: Any) -> dict[str, Any]:
    """adlfs's options from an Azure Connection, as the Azure provider builds them."""
    if conn_id is None:
        return {}
    conn = _connection(conn_id, where, required=True)
    extras: dict[str, Any] = conn.extra_dejson
    conn_type = conn.conn_type or "azure_data_lake"

    def field(name: str) -> Any:
        if name in extras:
            return extras[name]
        return extras.get(f"extra__{conn_type}__{name}")

    connection_string = field("connection_string")
    if connection_string:
        return {"connection_string": connection_string}
    options: dict[str, Any] = {}
    host: str | None = conn.host
    account = None
    if host:
        hostname = urlsplit(host if "://" in host else f"//{host}").hostname
        account = hostname.split(".", 1)[0] if hostname else None
    if conn_type == "adls":
        account = account or conn.login
    elif not (account and "." in (host or "")):
        account = conn.login or account
    if account:
        options["account_name"] = account
    tenant_id = field("tenant_id")
    login, password = conn.login or "", conn.password or ""
    if tenant_id:
        if login:
            options["client_id"] = login
        if password:
            options["client_secret"] = password
        auth_config = field("client_secret_auth_config")
        if auth_config and login and password:
            from azure.identity import ClientSecretCredential

            options["credential"] = ClientSecretCredential(tenant_id=tenant_id, client_id=login, client_secret=password, **auth_config)
    elif password:
        options["account_key"] = password
    for name in (
        "account_name", "account_key", "sas_token", "tenant_id", "managed_identity_client_id",
        "workload_identity_client_id", "workload_identity_tenant_id", "anon", "account_host",
    ):
        value = field(name)
        if value is not None:
            if value == "":
                options.pop(name, None)
            else:
                options[name] = value
    return options
