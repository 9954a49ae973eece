"""Is the file whole? Checks that run before any image reader, so a damaged file is refused, never read.

ITK's NIfTI reader fills a truncated file with zeros and pydicom reads a DICOM file cut short
without a word; a method run on half a head would still report findings. Each check here compares
what a file holds with what its header promises (and reads compressed streams to their end, which
verifies gzip's CRC-32 and length) and raises an `InputError` that names the file.
"""
import gzip
import re
import struct
import zlib
from pathlib import Path

import numpy as np

from .volume import InputError

CHUNK = 1 << 22
NRRD_TYPES = {"signed char": 1, "int8": 1, "int8_t": 1, "uchar": 1, "unsigned char": 1, "uint8": 1, "uint8_t": 1,
              "short": 2, "short int": 2, "signed short": 2, "signed short int": 2, "int16": 2, "int16_t": 2,
              "ushort": 2, "unsigned short": 2, "unsigned short int": 2, "uint16": 2, "uint16_t": 2,
              "int": 4, "signed int": 4, "int32": 4, "int32_t": 4, "uint": 4, "unsigned int": 4, "uint32": 4,
              "uint32_t": 4, "longlong": 8, "long long": 8, "int64": 8, "int64_t": 8, "ulonglong": 8,
              "unsigned long long": 8, "uint64": 8, "uint64_t": 8, "float": 4, "double": 8}
META_TYPES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
              "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
              "MET_DOUBLE": 8}


def damaged(path, what: str) -> InputError:
    return InputError(f"{Path(path).name}: incomplete or damaged file ({what}); copy or export it again")


def check_image_file(path: Path):
    """Refuse a NIfTI, NRRD or MetaImage file whose data is cut short, corrupted or missing."""
    path = Path(path)
    name = path.name.lower()
    if path.stat().st_size == 0:
        raise damaged(path, "0 bytes")
    if name.endswith((".nii", ".nii.gz")):
        check_nifti(path)
    elif name.endswith((".nrrd", ".nhdr")):
        check_nrrd(path)
    elif name.endswith((".mha", ".mhd")):
        check_metaimage(path)
    elif name.endswith(".gz"):
        stream_length(path, compressed=True)


def stream_length(path: Path, compressed: bool, offset: int = 0) -> int:
    """Bytes the file holds after `offset`, decompressed; reading a gzip stream to its end checks CRC and length."""
    try:
        with open(path, "rb") as raw:
            raw.seek(offset)
            stream = gzip.GzipFile(fileobj=raw) if compressed else raw
            total = 0
            for chunk in iter(lambda: stream.read(CHUNK), b""):
                total += len(chunk)
            return total
    except EOFError:
        raise damaged(path, "the compressed data ends early")
    except (gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise damaged(path, f"the compressed data is corrupted: {exc}")


def _expect(path, holds: int, promised: int):
    if holds < promised:
        raise damaged(path, f"it holds {holds:,} bytes of image data, its header promises {promised:,}")
    if holds > promised:
        raise damaged(path, f"{holds - promised:,} bytes more image data than its header describes")


# --- NIfTI ---------------------------------------------------------------------------------------
def check_nifti(path: Path):
    compressed = path.name.lower().endswith(".gz")
    with open(path, "rb") as f:
        if compressed and f.read(2) != b"\x1f\x8b":
            return  # not gzip at all: the reader says it is not an image
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as f:
            header = f.read(540)
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError):
        raise damaged(path, "its header cannot be read")
    layout = _nifti_layout(path, header)
    if layout is None:
        return  # not NIfTI at all: the reader says it is not an image
    dims, bitpix, offset = layout
    if any(d < 0 for d in dims):
        raise damaged(path, f"negative image size {dims} in its header")
    promised = int(np.prod(dims, dtype=np.int64)) * bitpix // 8
    total = stream_length(path, compressed)
    _expect(path, total - offset, promised)


def _nifti_layout(path, header: bytes):
    """(dims, bits per voxel, byte offset of the data) from a NIfTI-1 or NIfTI-2 header; None if not NIfTI."""
    if len(header) < 348:
        if len(header) >= 4 and 348 in (struct.unpack("<i", header[:4])[0], struct.unpack(">i", header[:4])[0]):
            raise damaged(path, f"a {len(header)}-byte NIfTI header (348 expected)")
        return None
    for endian in "<>":
        size = struct.unpack(endian + "i", header[:4])[0]
        if size == 348:
            dim = struct.unpack(endian + "8h", header[40:56])
            bitpix = struct.unpack(endian + "h", header[72:74])[0]
            offset = int(struct.unpack(endian + "f", header[108:112])[0])
            break
        if size == 540 and len(header) >= 540:
            bitpix = struct.unpack(endian + "h", header[14:16])[0]
            dim = struct.unpack(endian + "8q", header[16:80])
            offset = struct.unpack(endian + "q", header[168:176])[0]
            break
    else:
        return None
    ndim = dim[0]
    if not 1 <= ndim <= 7:
        raise damaged(path, f"{ndim} dimensions in its header")
    return list(dim[1:ndim + 1]), bitpix, max(offset, 352 if size == 348 else 544)


# --- NRRD ----------------------------------------------------------------------------------------
def check_nrrd(path: Path):
    fields, data_offset = _text_header(path, separator=":", end_blank=True)
    if "sizes" not in fields or "type" not in fields:
        raise damaged(path, "no 'sizes' or 'type' in its NRRD header")
    item = NRRD_TYPES.get(fields["type"].lower())
    encoding = fields.get("encoding", "raw").lower()
    if item is None or encoding not in ("raw", "gzip", "gz"):
        return  # text, hex or bzip2 encodings: left to the reader
    promised = int(np.prod([int(v) for v in fields["sizes"].split()], dtype=np.int64)) * item
    data_file = fields.get("data file", fields.get("datafile"))
    if data_file is not None:
        if data_file.split()[0] == "LIST" or "%" in data_file:
            return  # several data files: left to the reader
        target = path.parent / data_file
        if not target.exists():
            raise damaged(path, f"its data file {data_file} is missing")
        path, data_offset = target, 0
    skip = int(fields.get("byte skip", fields.get("byteskip", "0")))
    holds = stream_length(path, encoding != "raw", data_offset)
    if skip == -1:
        holds = min(holds, promised)
    _expect(path, holds - max(skip, 0), promised)


# --- MetaImage -----------------------------------------------------------------------------------
def check_metaimage(path: Path):
    fields, data_offset = _text_header(path, separator="=", end_key="ElementDataFile")
    item = META_TYPES.get(fields.get("ElementType", ""))
    if item is None or "DimSize" not in fields:
        raise damaged(path, "no DimSize or ElementType in its MetaImage header")
    channels = int(fields.get("ElementNumberOfChannels", "1"))
    promised = int(np.prod([int(v) for v in fields["DimSize"].split()], dtype=np.int64)) * item * channels
    data_file = fields.get("ElementDataFile", "LOCAL")
    if data_file != "LOCAL":
        if data_file.startswith("LIST") or "%" in data_file:
            return
        target = path.parent / data_file
        if not target.exists():
            raise damaged(path, f"its data file {data_file} is missing")
        path, data_offset = target, max(0, int(fields.get("HeaderSize", "0")))
    if fields.get("CompressedData", "False") == "True":
        holds = _zlib_length(path, data_offset)
    else:
        holds = path.stat().st_size - data_offset
    _expect(path, holds, promised)


def _zlib_length(path: Path, offset: int) -> int:
    inflate = zlib.decompressobj(zlib.MAX_WBITS | 32)  # zlib or gzip wrapper, as ITK writes either
    total = 0
    with open(path, "rb") as f:
        f.seek(offset)
        try:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                total += len(inflate.decompress(chunk))
            total += len(inflate.flush())
        except zlib.error as exc:
            raise damaged(path, f"the compressed data is corrupted: {exc}")
    if not inflate.eof:
        raise damaged(path, "the compressed data ends early")
    return total


def _text_header(path: Path, separator: str, end_blank=False, end_key=None):
    """Key/value lines of a text header and the byte offset where the data begins."""
    fields, offset = {}, 0
    with open(path, "rb") as f:
        for raw in iter(f.readline, b""):
            offset += len(raw)
            line = raw.decode("latin-1").rstrip("\r\n")
            if end_blank and not line.strip():
                break
            if line.startswith("#") or separator not in line:
                continue
            key, value = re.split(re.escape(separator) + "=?", line, maxsplit=1)
            fields[key.strip()] = value.strip()
            if end_key and key.strip() == end_key:
                break
            if offset > 1 << 20:
                raise damaged(path, "no end of its text header")
    return fields, offset


# --- DICOM ---------------------------------------------------------------------------------------
def check_dicom_pixels(ds, path):
    """Native (uncompressed) pixel data must hold every frame the header describes."""
    if "PixelData" not in ds:
        uid = getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", None)
        if uid is not None and "Image Storage" in getattr(uid, "name", ""):
            raise damaged(path, f"a {uid.name} file without its pixel data")
        return
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None and syntax.is_compressed:
        return  # encapsulated frames: the decoder refuses a broken one
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    bits = ds.Rows * ds.Columns * int(getattr(ds, "SamplesPerPixel", 1)) * frames * ds.BitsAllocated
    promised = (bits + 7) // 8
    holds = len(ds.PixelData)
    if holds < promised:
        raise damaged(path, f"its pixel data holds {holds:,} of the {promised:,} bytes of {frames} frame(s)")
