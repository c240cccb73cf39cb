"""MRC maps, images and image stacks, read and written through :mod:`mrcfile`.

Every way a file can be unusable (missing, not an MRC file, a header that promises more
data than the file holds, or less) surfaces as :class:`MrcFormatError` with a message that
names the file and says what is wrong, because a job that dies on a raw mrcfile traceback
after an hour on a cluster tells the user nothing. The header is checked against the file
size before mrcfile touches the data, so truncation is reported in terms a user can verify
(``ls -l``), and mrcfile is always opened with ``permissive=False``.

Stacks are memory-mapped: a particle stack can be larger than the memory of the node that
reads a few images from it.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import mrcfile.utils
import numpy as np
from mrcfile.constants import MAP_ID
from mrcfile.dtypes import HEADER_DTYPE

from orchestrator.em.errors import MrcFormatError

__all__ = [
    "MrcInfo",
    "read_header",
    "read_volume",
    "read_image",
    "read_stack",
    "read_stack_images",
    "write_volume",
    "write_image",
    "write_stack",
]

_HEADER_BYTES = 1024
# Stored as is; anything else is converted (float64 -> float32) or refused.
_WRITABLE_DTYPES = {np.dtype(t) for t in ("int8", "int16", "uint16", "float16", "float32", "complex64")}
_ISPG_STACK = 0
_ISPG_VOLUME = 1


@dataclass(frozen=True, slots=True)
class MrcInfo:
    """What the header of an MRC file says, checked against the file's size.

    ``shape`` is in numpy order, (sections, rows, columns) = (nz, ny, nx); for a stack nz is the
    number of images. ``voxel_size`` is (x, y, z) in Å (0 when the header does not say).
    """

    path: Path
    shape: tuple[int, int, int]
    voxel_size: tuple[float, float, float]
    mode: int
    dtype: np.dtype
    space_group: int
    data_offset: int

    @property
    def is_stack(self) -> bool:
        """A stack of 2D images rather than one volume (MRC2014: space group 0, nz > 1)."""
        return self.space_group == _ISPG_STACK and self.shape[0] > 1

    @property
    def n_images(self) -> int:
        """Number of 2D images when the file is read as a stack (nz; 1 for a single image)."""
        return self.shape[0]

    @property
    def data_bytes(self) -> int:
        """Size of the data block that the header promises (Python ints: 2^64 voxels do not wrap)."""
        return math.prod(self.shape) * self.dtype.itemsize

    def describe(self) -> str:
        """Shape and type as a user reads it (x first): '64x64x500 float32'."""
        nz, ny, nx = self.shape
        return f"{nx}x{ny}x{nz} {self.dtype.name}"


def read_header(path: str | os.PathLike[str]) -> MrcInfo:
    """Read and check only the header (1 KiB): shape, voxel size, mode, data type.

    Raises :class:`MrcFormatError` when the file is missing, is not an MRC file, or is shorter
    or longer than its header says. The header is decoded here, not by mrcfile, because mrcfile
    allocates the extended header (``nsymbt`` bytes, up to 2 GiB) before anything is checked;
    every size is compared with the file's real size first, in Python integers that cannot wrap.
    """
    path = Path(path)
    header, file_size = _raw_header(path)
    try:
        dtype = np.dtype(mrcfile.utils.data_dtype_from_header(header))
    except ValueError as err:
        raise MrcFormatError(
            f"{path}: unsupported or corrupt data mode {int(header.mode)} (header field mode: {err})"
        ) from err
    dims = {"nx": int(header.nx), "ny": int(header.ny), "nz": int(header.nz)}
    negative = [f"{field}={n}" for field, n in dims.items() if n < 0]
    if negative:
        raise MrcFormatError(f"{path}: header is corrupt: negative dimensions ({', '.join(negative)})")
    space_group = int(header.ispg)
    if mrcfile.utils.spacegroup_is_volume_stack(space_group):
        raise MrcFormatError(
            f"{path}: unsupported MRC space group ispg={space_group} (volume stacks are not supported)"
        )
    extended = int(header.nsymbt)
    if extended < 0:
        raise MrcFormatError(f"{path}: header is corrupt: negative extended header size nsymbt={extended}")
    shape = tuple(int(n) for n in mrcfile.utils.data_shape_from_header(header))
    info = MrcInfo(
        path=path,
        shape=_as_3d(path, shape),
        voxel_size=_voxel_size(header),
        mode=int(header.mode),
        dtype=dtype,
        space_group=space_group,
        data_offset=_HEADER_BYTES + extended,
    )
    _check_size(info, file_size)
    return info


def read_volume(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a 3D map into memory as a (nz, ny, nx) array (a single 2D image gives nz = 1)."""
    info = read_header(path)
    with _mrcfile_errors(info.path), mrcfile.open(info.path, mode="r", permissive=False) as mrc:
        return _native(mrc.data).reshape(info.shape)


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a single 2D image (micrograph, average) into memory as a (ny, nx) array."""
    info = read_header(path)
    if info.shape[0] != 1:
        raise MrcFormatError(f"{info.path}: expected a single 2D image but it holds {info.describe()}")
    with _mrcfile_errors(info.path), mrcfile.open(info.path, mode="r", permissive=False) as mrc:
        return _native(mrc.data).reshape(info.shape[1:])


def read_stack(path: str | os.PathLike[str]) -> np.ndarray:
    """Memory-map a stack of 2D images as a read-only (n, ny, nx) array.

    Nothing is read until the array is indexed. The array stays valid after this returns
    (mrcfile only marks its own view read-only on close; the mapping lives on with the array).
    """
    info = read_header(path)
    with _mrcfile_errors(info.path), mrcfile.mmap(info.path, mode="r", permissive=False) as mrc:
        data = mrc.data
    return data.reshape(info.shape)


def read_stack_images(path: str | os.PathLike[str], indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """Copy the images at 1-based ``indices`` (RELION's ``000012@stack.mrcs``) out of a stack.

    Returns a (len(indices), ny, nx) array in memory, in the order asked for.
    """
    stack = read_stack(path)
    try:
        wanted = np.asarray(indices, dtype=np.int64).reshape(-1)
    except (OverflowError, TypeError, ValueError) as err:
        raise MrcFormatError(f"{path}: image indices {indices!r:.60} are not 1-based image numbers ({err})") from err
    bad = wanted[(wanted < 1) | (wanted > stack.shape[0])]
    if bad.size:
        raise MrcFormatError(
            f"{path}: image {int(bad[0])} requested but the stack holds {stack.shape[0]} images "
            "(indices are 1-based)"
        )
    return _native(stack[wanted - 1])


def write_volume(
    path: str | os.PathLike[str], data: np.ndarray, voxel_size: float | tuple[float, float, float]
) -> Path:
    """Write a 3D map (nz, ny, nx) with its voxel size in Å; returns the path written."""
    volume = np.asarray(data)
    if volume.ndim != 3:
        raise MrcFormatError(f"{path}: a volume must be 3D (nz, ny, nx), got shape {volume.shape}")
    return _write(Path(path), volume, voxel_size, _ISPG_VOLUME)


def write_image(path: str | os.PathLike[str], data: np.ndarray, pixel_size: float) -> Path:
    """Write one 2D image (ny, nx) with its pixel size in Å; returns the path written."""
    image = np.asarray(data)
    if image.ndim != 2:
        raise MrcFormatError(f"{path}: an image must be 2D (ny, nx), got shape {image.shape}")
    return _write(Path(path), image, pixel_size, _ISPG_STACK)


def write_stack(path: str | os.PathLike[str], data: np.ndarray, pixel_size: float) -> Path:
    """Write a stack of 2D images (n, ny, nx) with their pixel size in Å; returns the path.

    The header marks it as an image stack (space group 0), as RELION writes ``.mrcs`` files.
    """
    stack = np.asarray(data)
    if stack.ndim != 3:
        raise MrcFormatError(f"{path}: a stack must be 3D (n, ny, nx), got shape {stack.shape}")
    return _write(Path(path), stack, (pixel_size, pixel_size, pixel_size), _ISPG_STACK)


def _write(
    path: Path, data: np.ndarray, voxel_size: float | tuple[float, float, float], space_group: int
) -> Path:
    """Write through a temporary file and rename, so a crash never leaves a half-written map."""
    data = _storable(path, data)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with _mrcfile_errors(path), mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(data)
            if space_group == _ISPG_VOLUME and data.ndim == 3:
                mrc.set_volume()
            elif data.ndim == 3:
                mrc.set_image_stack()
            mrc.voxel_size = voxel_size
            mrc.update_header_stats()
            _label(mrc)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


#: The header's one text label. mrcfile's own carries the time of writing, so two runs that
#: compute the same map would write different files; the time is in the run's provenance.
MRC_LABEL = b"Written by em-orchestrator"


def _label(mrc: mrcfile.mrcfile.MrcFile) -> None:
    mrc.header.label[0] = MRC_LABEL
    mrc.header.nlabl = 1


def _storable(path: Path, data: np.ndarray) -> np.ndarray:
    """Convert to a data type MRC can hold, refusing silent precision loss other than float64."""
    if data.dtype == np.float64:
        return data.astype(np.float32)
    if data.dtype == np.bool_:
        return data.astype(np.int8)
    if data.dtype.newbyteorder("=") not in _WRITABLE_DTYPES:
        raise MrcFormatError(
            f"{path}: cannot store {data.dtype} data in MRC (use float32, int16, uint16, int8 or complex64)"
        )
    return data


def _native(data: np.ndarray) -> np.ndarray:
    """An in-memory copy in the machine's byte order (big-endian files exist in the wild)."""
    return np.array(data, dtype=data.dtype.newbyteorder("="))


def _as_3d(path: Path, shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) == 2:
        return (1, shape[0], shape[1])
    if len(shape) == 3:
        return (shape[0], shape[1], shape[2])
    # mrcfile gives 4D shapes only for volume stacks (ispg 401+), which we do not handle.
    raise MrcFormatError(f"{path}: unsupported MRC data shape {shape} (volume stacks are not supported)")


def _raw_header(path: Path) -> tuple[np.recarray, int]:
    """The 1024-byte header in the file's byte order, and the file's size in bytes.

    Mirrors mrcfile's own checks (the ``MAP`` identifier, the machine stamp), so a file that
    passes here opens in mrcfile with ``permissive=False``.
    """
    try:
        with path.open("rb") as stream:
            file_size = os.fstat(stream.fileno()).st_size
            raw = stream.read(_HEADER_BYTES)
    except FileNotFoundError as err:
        raise MrcFormatError(f"{path}: file does not exist") from err
    except IsADirectoryError as err:
        raise MrcFormatError(f"{path}: is a directory, not an MRC file") from err
    except OSError as err:
        raise MrcFormatError(f"{path}: cannot be read: {err.strerror or err}") from err
    except ValueError as err:  # a NUL in the name (from a STAR file, say): no file can have it
        raise MrcFormatError(f"{str(path)!r}: not a valid file name ({err})") from err
    if len(raw) < _HEADER_BYTES:
        raise MrcFormatError(f"{path}: {_explain('enough bytes for MRC header')}")
    header = np.frombuffer(raw, dtype=HEADER_DTYPE).reshape(()).view(np.recarray)
    if bytes(header.map)[:3] != MAP_ID[:3]:
        raise MrcFormatError(f"{path}: {_explain('Map ID string not found')}")
    try:
        byte_order = mrcfile.utils.byte_order_from_machine_stamp(header.machst)
    except ValueError as err:
        raise MrcFormatError(f"{path}: {_explain(str(err))}") from err
    return header.view(HEADER_DTYPE.newbyteorder(byte_order)).view(np.recarray), file_size


def _voxel_size(header: np.recarray) -> tuple[float, float, float]:
    """Cell size over sampling per axis (Å); 0 where the header does not say (mx = 0, no cell)."""
    sizes = []
    for cell, sampling in ((header.cella.x, header.mx), (header.cella.y, header.my), (header.cella.z, header.mz)):
        length, count = float(cell), int(sampling)
        sizes.append(length / count if count > 0 and math.isfinite(length) and length > 0 else 0.0)
    return (sizes[0], sizes[1], sizes[2])


def _check_size(info: MrcInfo, file_size: int) -> None:
    """Compare the extended header and data block the header promises with what the file holds."""
    if info.data_offset > file_size:
        raise MrcFormatError(
            f"{info.path}: file is truncated: header says {info.data_offset - _HEADER_BYTES} bytes of "
            f"extended header (nsymbt) but the file holds {file_size} bytes in all"
        )
    present = file_size - info.data_offset
    expected = info.data_bytes
    if present < expected:
        raise MrcFormatError(
            f"{info.path}: file is truncated: header says {info.describe()} ({expected} bytes of data) "
            f"but only {max(present, 0)} are present"
        )
    if present > expected:
        raise MrcFormatError(
            f"{info.path}: file is {present - expected} bytes longer than its header says "
            f"({info.describe()}, {expected} bytes of data): header or data is corrupt"
        )


@contextmanager
def _mrcfile_errors(path: Path) -> Iterator[None]:
    """Turn mrcfile's exceptions, and its warnings (which signal corruption), into MrcFormatError.

    ``warnings.catch_warnings`` is process-global; a warning from another thread in this
    window would be reported here too, which is acceptable for an error path.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        except FileNotFoundError as err:
            raise MrcFormatError(f"{path}: file does not exist") from err
        except IsADirectoryError as err:
            raise MrcFormatError(f"{path}: is a directory, not an MRC file") from err
        except OSError as err:
            raise MrcFormatError(f"{path}: cannot be read: {err.strerror or err}") from err
        except ValueError as err:
            raise MrcFormatError(f"{path}: {_explain(str(err))}") from err
    for warning in caught:
        if issubclass(warning.category, RuntimeWarning):
            raise MrcFormatError(f"{path}: {_explain(str(warning.message))}")


def _explain(message: str) -> str:
    """Reword mrcfile's messages in terms of the file rather than of mrcfile's internals."""
    if "enough bytes for MRC header" in message:
        return "not an MRC file, or truncated: shorter than the 1024-byte MRC header"
    if "Map ID string not found" in message:
        return "not an MRC file (no 'MAP' identifier in the header)"
    if "machine stamp" in message.lower():
        return f"not an MRC file, or its header is corrupt ({message})"
    return f"invalid MRC file: {message}"
