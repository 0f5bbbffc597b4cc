"""Fetching files into the cache: nothing half-downloaded or corrupt ever gets a final name.

Every file is streamed into a hidden temporary file next to its destination, its checksum is
computed on the way, and only a complete, verified file is moved into place with
``os.replace`` (atomic on one file system).  A failed, interrupted or mismatching download
leaves nothing behind, so a retry simply starts again.

Where the bytes come from: the corpus's public home, or ``TRANSFORMER_DATA_MIRROR`` (a local
folder or a URL base laid out as ``<mirror>/<corpus>/<file>``).  Where they go:
:func:`resolve_data_dir`.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import secrets
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm  # a text bar everywhere: terminals, JupyterLab, stored outputs

MIRROR_ENV = "TRANSFORMER_DATA_MIRROR"
DATA_DIR_ENV = "TRANSFORMER_DATA_DIR"
CHUNK = 1 << 20
TIMEOUT_S = 60


class DataError(RuntimeError):
    """A data file is missing, corrupt or malformed; the message says which and what to do."""


class DownloadError(DataError):
    """A download failed or was cut short; nothing was written under the final name."""


class ChecksumError(DataError):
    """A file does not match its recorded checksum."""


class WriteError(OSError):
    """A cache file could not be written for want of space (a full disk, a file-size limit,
    a quota); its errno and strerror are the system's, its filename the file meant.  Nothing
    was left under that name (``atomic_output``)."""


FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


def write_failure(e: BaseException, dest: Path) -> WriteError | None:
    """``e`` as a ``WriteError`` naming ``dest`` when it says the disk is full (or a file
    too large), else None: so that a full disk is reported as such, not as a corrupt source."""
    if isinstance(e, WriteError):
        return e
    if isinstance(e, OSError) and e.errno in FULL_ERRNOS:
        return WriteError(e.errno, e.strerror, str(dest))
    return None


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: the argument, else ``$TRANSFORMER_DATA_DIR``, else ``<repo>/data/cache``
    when running from a checkout, else ``~/.cache/transformer``."""
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or None
    if data_dir is None:
        repo = Path(__file__).resolve().parents[2]
        if (repo / "pyproject.toml").is_file() and (repo / "transformer").is_dir():
            data_dir = repo / "data" / "cache"
        else:
            cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
            data_dir = Path(cache_home) / "transformer"
    return Path(data_dir).expanduser()


def source_for(corpus: str, filename: str, public_url: str) -> str:
    """The URL or local path to fetch ``filename`` from, honouring ``TRANSFORMER_DATA_MIRROR``."""
    mirror = os.environ.get(MIRROR_ENV)
    if not mirror:
        return public_url
    if "://" in mirror:
        return f"{mirror.rstrip('/')}/{corpus}/{filename}"
    return str(Path(mirror).expanduser() / corpus / filename)


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def split_checksum(expected: str) -> tuple[str, str]:
    """``"md5:abc..."`` -> ``("md5", "abc...")``; a bare hex digest is sha256."""
    algorithm, _, digest = expected.rpartition(":")
    return algorithm or "sha256", digest.lower()


def verify(path: Path, expected: str | None) -> str:
    """Check a cached file against ``expected``; return its sha256 (or the expected algorithm's
    digest).  A mismatch raises :class:`ChecksumError` telling the user to delete the file."""
    algorithm, digest = split_checksum(expected) if expected else ("sha256", None)
    actual = file_digest(path, algorithm)
    if digest is not None and actual != digest:
        raise ChecksumError(
            f"cached file {path} does not match its checksum\n"
            f"  expected {algorithm} {digest}\n  actual   {algorithm} {actual}\n"
            f"Delete {path} and download again (python -m transformer download ...)."
        )
    return actual


def _open_source(source: str):
    """(readable binary stream, total size or None) for a URL or a local path."""
    if "://" not in source or source.startswith("file://"):
        path = Path(source.removeprefix("file://"))
        if not path.is_file():
            raise DownloadError(f"{path} does not exist (check {MIRROR_ENV})")
        return open(path, "rb"), path.stat().st_size
    request = urllib.request.Request(source, headers={"User-Agent": "transformer-repro"})
    response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    length = response.headers.get("Content-Length")
    return response, int(length) if length is not None else None


@contextmanager
def atomic_output(dest: Path, mode: str = "wb", suffix: str = ".tmp"):
    """Yield a file that becomes ``dest`` (``os.replace``) only if the block succeeds; on any
    error the temporary file is removed and ``dest`` is left as it was.  A write that fails
    for want of space raises ``WriteError`` naming ``dest`` (Python's own OSError names no
    file), whatever raised it (``np.savez`` on closing its zip ...)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{os.getpid()}-{secrets.token_hex(4)}{suffix}"
    try:
        with open(tmp, mode.replace("w", "x"), encoding=None if "b" in mode else "utf-8") as f:
            yield f
        os.replace(tmp, dest)
    except Exception as e:
        failure = write_failure(e, dest) or write_failure(e.__context__, dest)
        if failure is None or failure is e:
            raise
        raise failure from e
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_output(path, "w") as f:
        f.write(text)


def fetch(source: str, dest: Path, expected: str | None = None, *, progress: bool = True) -> str:
    """Download ``source`` (URL or path) to ``dest`` atomically; return the file's digest.

    ``expected`` is a sha256 hex digest (or ``"md5:<hex>"``); with ``None`` nothing is compared
    but the sha256 is still returned so the caller can report or record it.
    """
    algorithm, digest = split_checksum(expected) if expected else ("sha256", None)
    _sweep_stale_parts(dest)
    with atomic_output(dest, "wb", suffix=".part") as out:
        try:
            stream, total = _open_source(source)
        except (urllib.error.URLError, OSError) as e:
            raise DownloadError(f"could not fetch {dest.name} from {source}: {e}\n"
                                f"Check your connection or {MIRROR_ENV}, then retry.") from e
        h, received = hashlib.new(algorithm), 0
        with stream, tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                          desc=dest.name, disable=not progress, leave=False) as bar:
            try:
                while chunk := stream.read(CHUNK):
                    out.write(chunk)
                    h.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as e:  # reset, timeout...
                if (full := write_failure(e, dest)) is not None:  # our disk, not the source
                    raise full from e
                raise DownloadError(f"download of {dest.name} from {source} was interrupted "
                                    f"after {received} bytes ({e!r}). Nothing was kept; retry "
                                    "the download.") from e
        if total is not None and received != total:
            raise DownloadError(f"download of {dest.name} from {source} was cut short: got "
                                f"{received} of {total} bytes. Nothing was kept; retry the "
                                "download.")
        actual = h.hexdigest()
        if digest is not None and actual != digest:
            raise ChecksumError(
                f"{dest.name} from {source} does not match its recorded checksum\n"
                f"  expected {algorithm} {digest}\n  actual   {algorithm} {actual}\n"
                f"The file was discarded (nothing written to {dest}). If {MIRROR_ENV} is set, "
                f"check that the mirror holds the original file; otherwise retry the download."
            )
    return actual


def _sweep_stale_parts(dest: Path, max_age_s: float = 24 * 3600) -> None:
    """Remove temporary files left by a download of ``dest`` killed over a day ago."""
    now = time.time()
    for part in dest.parent.glob(f".{dest.name}.*.part"):
        try:
            if now - part.stat().st_mtime > max_age_s:
                part.unlink()
        except OSError:
            pass
