"""Safe files for the run cache and training checkpoints: plain data, checksummed, written atomically.

A stored value is a tree of plain data: None, bool, int, float, str, list, tuple, dict (any
such keys), NumPy arrays and scalars of numeric, bool or string dtype, CPU or CUDA torch tensors
(read back on the CPU), torch dtypes, and instances of the ibutils dataclasses and named tuples
listed in `ALLOWED_TYPES`. Anything else is refused when saving, with a ValueError naming where
in the value it sits. Reading never unpickles and never runs code but the constructors of
those allowlisted types (their validation).

A file is

    b"ibutils-store 1\\n"                                    format and version
    {"sha256": ..., "tree": <bytes>, "blob": <bytes>}\\n     header, JSON
    tree                                                     the value's structure, UTF-8 JSON
    blob                                                     the arrays' bytes, one after another

`read` checks the sizes and the SHA-256 of tree + blob before it decodes anything, so a
truncated or altered file raises `CorruptFile` and is never half read. `write` writes a
temporary file beside the target, fsyncs it, renames it over the target and fsyncs the folder:
a reader sees the old file or the new one, whatever moment the writer is killed at.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import importlib
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

MAGIC = b"ibutils-store 1\n"
_ALIGN = 64  # each array's bytes start at a multiple of this in the blob
_ARRAY_KINDS = "biufcUS"  # bool, ints, floats, complex, strings: never objects or records

# The only classes a file may name. Add a result type here to cache it.
ALLOWED_TYPES = frozenset({
    "ibutils.train.TrainConfig", "ibutils.train.Run",
    "ibutils.infoplane.Binning", "ibutils.infoplane.InformationPlane",
    "ibutils.gradients.Statistics", "ibutils.gradients.Trajectory",
    "ibutils.mi.MI", "ibutils.mi.KDEBounds",
    "ibutils.experiments.TishbyNetResult", "ibutils.experiments.KDEPlane", "ibutils.experiments.MnistNetResult",
    "ibutils.linear.Teacher", "ibutils.linear.LinearRun",
    "ibutils.results.Claim",
})


class CorruptFile(ValueError):
    """A stored file that is truncated, altered, of an unknown format, or names a type not allowed."""


def notice(message: str) -> None:
    """Tell the user about the cache or a checkpoint in one line on stderr, `ibutils: <message>`."""
    print(f"ibutils: {' '.join(message.split())}", file=sys.stderr, flush=True)


def _type_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_namedtuple(obj: Any) -> bool:
    return isinstance(obj, tuple) and hasattr(type(obj), "_fields")


class _Encoder:
    """Turns a value into a JSON tree and a list of array buffers (see the module docstring)."""

    def __init__(self):
        self.buffers: list[bytes] = []
        self.size = 0

    def array(self, a: np.ndarray, where: str) -> dict:
        if a.dtype.kind not in _ARRAY_KINDS:
            raise ValueError(f"value{where}: cannot store an array of dtype {a.dtype} (plain numbers, bools or strings only)")
        data = np.ascontiguousarray(a).tobytes()
        offset = -(-self.size // _ALIGN) * _ALIGN
        if offset > self.size:
            self.buffers.append(bytes(offset - self.size))
        self.buffers.append(data)
        self.size = offset + len(data)
        return {"dtype": a.dtype.str, "shape": list(a.shape), "offset": offset, "nbytes": len(data)}

    def encode(self, obj: Any, where: str = "") -> Any:
        if obj is None or isinstance(obj, (bool, str)) or type(obj) in (int, float):
            return obj
        if isinstance(obj, np.generic):
            return {"$": "numpy.scalar", **self.array(np.asarray(obj), where)}
        if isinstance(obj, np.ndarray):
            return {"$": "numpy.ndarray", **self.array(obj, where)}
        if isinstance(obj, torch.Tensor):
            if obj.requires_grad:
                raise ValueError(f"value{where}: cannot store a tensor that requires grad (detach it first)")
            try:
                array = obj.detach().cpu().resolve_conj().resolve_neg().numpy()
            except (TypeError, RuntimeError):
                raise ValueError(f"value{where}: cannot store a tensor of dtype {obj.dtype}") from None
            return {"$": "torch.Tensor", "torch_dtype": str(obj.dtype), **self.array(array, where)}
        if isinstance(obj, torch.dtype):
            return {"$": "torch.dtype", "name": str(obj)}
        if type(obj) is list:
            return [self.encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        if type(obj) is tuple:
            return {"$": "tuple", "items": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]}
        if type(obj) is dict:
            return {"$": "dict", "items": [[self.encode(k, f"{where} key {k!r}"), self.encode(v, f"{where}[{k!r}]")]
                                           for k, v in obj.items()]}
        name = _type_name(type(obj))
        if name in ALLOWED_TYPES and _is_namedtuple(obj):
            return {"$": "namedtuple", "type": name,
                    "items": [self.encode(v, f"{where}.{f}") for f, v in zip(obj._fields, obj)]}
        if name in ALLOWED_TYPES and dataclasses.is_dataclass(obj):
            return {"$": "dataclass", "type": name, "layout": _layout(type(obj)),
                    "fields": {f.name: self.encode(getattr(obj, f.name), f"{where}.{f.name}")
                               for f in dataclasses.fields(obj)}}
        raise ValueError(f"value{where}: cannot store a {name} (plain data, arrays, tensors and the ibutils "
                         f"types of ibutils.store.ALLOWED_TYPES only)")


def _layout(cls: type) -> int:
    """The version of the layout of a result type's arrays (its `LAYOUT`, 1 if it has none): a
    type whose arrays change their axis order or meaning raises it, so that entries written in
    the old layout are refused (`CorruptFile`, hence recomputed by the run cache), not misread."""
    return getattr(cls, "LAYOUT", 1)


def _allowed_class(name: str) -> type:
    if name not in ALLOWED_TYPES:
        raise CorruptFile(f"names the type {name!r}, which is not in ibutils.store.ALLOWED_TYPES")
    module, _, qualname = name.rpartition(".")
    return getattr(importlib.import_module(module), qualname)


def _decode(node: Any, blob: memoryview) -> Any:
    if not isinstance(node, (dict, list)):
        return node
    if isinstance(node, list):
        return [_decode(v, blob) for v in node]
    kind = node.get("$")
    if kind == "tuple":
        return tuple(_decode(v, blob) for v in node["items"])
    if kind == "dict":
        return {_decode(k, blob): _decode(v, blob) for k, v in node["items"]}
    if kind in ("numpy.ndarray", "numpy.scalar", "torch.Tensor"):
        dtype = np.dtype(node["dtype"])
        if dtype.kind not in _ARRAY_KINDS or node["offset"] + node["nbytes"] > len(blob):
            raise CorruptFile(f"holds an array of dtype {dtype} at bytes {node['offset']}+{node['nbytes']}")
        shape = tuple(node["shape"])
        array = np.frombuffer(blob, dtype, node["nbytes"] // max(dtype.itemsize, 1), node["offset"]).reshape(shape).copy()
        if kind == "numpy.scalar":
            return array[()]
        if kind == "numpy.ndarray":
            return array
        tensor = torch.from_numpy(array)
        if str(tensor.dtype) != node["torch_dtype"]:
            raise CorruptFile(f"holds a tensor of dtype {node['torch_dtype']} stored as {dtype}")
        return tensor
    if kind == "torch.dtype":
        dtype = getattr(torch, node["name"].removeprefix("torch."), None)
        if not isinstance(dtype, torch.dtype):
            raise CorruptFile(f"names the torch dtype {node['name']!r}")
        return dtype
    if kind == "namedtuple":
        return _allowed_class(node["type"])(*(_decode(v, blob) for v in node["items"]))
    if kind == "dataclass":
        cls = _allowed_class(node["type"])
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if node.get("layout", 1) != _layout(cls):
            raise CorruptFile(f"holds a {node['type']} in layout {node.get('layout', 1)}, "
                              f"but this ibutils reads layout {_layout(cls)}")
        if set(fields) != set(node["fields"]):
            raise CorruptFile(f"holds a {node['type']} with fields {sorted(node['fields'])}, not {sorted(fields)}")
        values = {name: _decode(v, blob) for name, v in node["fields"].items()}
        obj = cls(**{name: v for name, v in values.items() if fields[name].init})
        for name, v in values.items():
            if not fields[name].init:
                object.__setattr__(obj, name, v)
        return obj
    raise CorruptFile(f"holds a node of unknown kind {kind!r}")


def dumps(value: Any) -> bytes:
    """`value` as the bytes of a store file (see the module docstring). ValueError if it holds
    anything but plain data and allowlisted types."""
    encoder = _Encoder()
    tree = json.dumps(encoder.encode(value), separators=(",", ":"), allow_nan=True).encode()
    blob = b"".join(encoder.buffers)
    digest = hashlib.sha256(tree)
    digest.update(blob)
    header = json.dumps({"sha256": digest.hexdigest(), "tree": len(tree), "blob": len(blob)}).encode()
    return b"".join((MAGIC, header, b"\n", tree, blob))


def loads(data: bytes) -> Any:
    """The value stored in `data` (from `dumps`). CorruptFile if it is truncated, altered, of
    another format, or names a type not in `ALLOWED_TYPES`."""
    if not data.startswith(MAGIC):
        raise CorruptFile(f"does not start with {MAGIC!r}")
    end = data.find(b"\n", len(MAGIC))
    try:
        header = json.loads(data[len(MAGIC):end])
        n_tree, n_blob, sha = int(header["tree"]), int(header["blob"]), str(header["sha256"])
    except (ValueError, KeyError, TypeError):
        raise CorruptFile("has an unreadable header") from None
    body = memoryview(data)[end + 1:]
    if end < 0 or len(body) != n_tree + n_blob:
        raise CorruptFile(f"holds {len(body) if end >= 0 else 0} bytes after its header, not {n_tree + n_blob}: truncated or extended")
    if hashlib.sha256(body).hexdigest() != sha:
        raise CorruptFile("does not match its SHA-256 checksum")
    try:
        return _decode(json.loads(bytes(body[:n_tree])), body[n_tree:])
    except CorruptFile:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, ImportError) as exc:
        raise CorruptFile(f"cannot be decoded ({exc})") from None


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. a platform without directory descriptors
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temporary_name(path: Path) -> Path:
    """A writer's own temporary file beside `path`: `.<name>.<host>.<pid>.tmp`."""
    return path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")


def _remove_stale_temporaries(path: Path) -> None:
    """Remove temporary files for `path` left by killed writers of this host (their pid is gone)."""
    host = socket.gethostname()
    for tmp in path.parent.glob(f".{path.name}.{host}.*.tmp"):
        pid = tmp.name[len(f".{path.name}.{host}."):-len(".tmp")]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except OSError:  # alive, owned by someone else
            pass


def write_bytes(path: Path | str, data: bytes) -> None:
    """Write `data` to `path` atomically and durably: a temporary file beside it, fsync, rename,
    fsync of the folder. An OSError (e.g. a full disk) leaves no temporary file behind and is
    raised again with the path in its message."""
    path = Path(path)
    tmp = _temporary_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException as exc:  # an OSError, or Ctrl-C in the middle of the write
        tmp.unlink(missing_ok=True)
        if not isinstance(exc, OSError):
            raise
        reason = exc.strerror or str(exc)
        if exc.errno == errno.ENOSPC:
            reason += "; free some space, or point IBUTILS_CACHE_DIR / IBUTILS_RESULTS_DIR elsewhere"
        raise OSError(exc.errno, f"cannot write {path}: {reason}") from exc
    _fsync_folder(path.parent)
    _remove_stale_temporaries(path)


def remove(path: Path | str) -> None:
    """Remove the file at `path`, if any, and the temporary files killed writers left for it."""
    path = Path(path)
    path.unlink(missing_ok=True)
    _remove_stale_temporaries(path)


def write(path: Path | str, value: Any) -> None:
    """Store `value` at `path` (`dumps`, then `write_bytes`)."""
    write_bytes(path, dumps(value))


def read(path: Path | str) -> Any:
    """The value stored at `path`. FileNotFoundError if there is none; CorruptFile (its message
    names the file) if it is damaged or not a store file."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return loads(data)
    except CorruptFile as exc:
        raise CorruptFile(f"{path} {exc}") from None
