"""Safe reading of a checkpoint file: restricted unpickling (``weights_only=True`` with an allow-list)
or safetensors; a file that needs more is refused with one line naming the globals it needs, unless
the user trusts it (``trust=True``, CLI ``--trust-checkpoint``). The only module that unpickles."""

from __future__ import annotations

import argparse
import pickle
import re
import struct
import warnings
from pathlib import Path
from typing import Any

import torch

from ..errors import SimpoolBenchError
from ..files import check_zip_entries

TRUST_FLAG = "--trust-checkpoint"

# The only globals a pickle may name under safe loading: what the official files really hold
# (timm train.py and DINO main_dino.py both pickle their argparse.Namespace as ``args``).
SAFE_GLOBALS: tuple[type, ...] = (argparse.Namespace,)
_SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


def check_checkpoint_file(path: str | Path) -> Path:
    """``path`` as a Path when it is a readable file, else one error naming it."""
    p = Path(path)
    if not p.exists():
        raise SimpoolBenchError(f"checkpoint {p}: no such file")
    if p.is_dir():
        raise SimpoolBenchError(f"checkpoint {p}: is a directory, expected a checkpoint file")
    if not p.is_file():  # opening a named pipe waits for a writer (forever); a pipe cannot be read twice
        raise SimpoolBenchError(f"checkpoint {p}: not a regular file (a pipe, socket or device), expected a checkpoint file")
    try:
        with open(p, "rb"):
            pass
    except OSError as e:
        raise SimpoolBenchError(f"checkpoint {p}: cannot be read ({e.strerror or e})") from None
    return p


def _is_safetensors(path: Path) -> bool:
    """Sniff the safetensors layout: an 8-byte little-endian header length, then a JSON object."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= min(size - 8, _SAFETENSORS_MAX_HEADER) and head[8:9] == b"{"


def _first_line(e: BaseException | str, limit: int = 160) -> str:
    text = " ".join(str(e).split())
    return (text[: limit - 3] + "...") if len(text) > limit else text


def _blocked_globals(path: Path, err: BaseException) -> list[str]:
    """Names of the pickle globals that safe loading refused (from the error, else by scanning)."""
    names = re.findall(r"GLOBAL ([A-Za-z_][\w.]*)", str(err))
    if not names and hasattr(torch.serialization, "get_unsafe_globals_in_checkpoint"):
        try:
            names = list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
        except Exception:  # noqa: BLE001 - best effort, only used to word the message
            names = []
    allowed = {f"{g.__module__}.{g.__qualname__}" for g in SAFE_GLOBALS}
    return sorted({n for n in names if n not in allowed})


def _by_safetensors_name(path: Path, err: BaseException) -> SimpoolBenchError | None:
    """``torch.load`` reads a ``.safetensors`` name with safetensors: its failure is that file's error."""
    from safetensors import SafetensorError

    if not (isinstance(err, SafetensorError) and path.name.endswith(".safetensors")):
        return None
    return unreadable_safetensors(f"checkpoint {path}", path, err, "rename it to .pth (a .safetensors name is read as safetensors)")


def not_a_torch_file(path: Path, what: str | None = None) -> SimpoolBenchError | None:
    """A file ``torch.load`` failed on that does not even start as ``torch.save`` writes (a zip
    archive or a pickle): say what it starts with (an HTML page is a download that went wrong), not
    the unpickler's detail, and not that trusting it would help. A zip archive cut short (no central
    directory: an interrupted download or copy), or one that ``torch.save`` did not write, is said to
    be one. ``what`` names the file (default: ``checkpoint PATH``)."""
    what = what or f"checkpoint {path}"
    zip_error = _zip_problem(path)
    if zip_error:
        return SimpoolBenchError(f"{what}: {zip_error}")
    if path.name.endswith(".safetensors") or _looks_like_torch_pickle(path):
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return None
    if not head:
        return SimpoolBenchError(f"{what}: not a PyTorch checkpoint: the file is empty (0 bytes)")
    text = head.lstrip().lower()
    html = " (an HTML page: a download that went wrong? fetch the file itself)" if text.startswith((b"<!doctype html", b"<html")) else ""
    return SimpoolBenchError(
        f"{what}: not a PyTorch checkpoint: it starts with {head[:16]!r}, not as torch.save writes (a zip archive or a pickle){html}"
    )


def _zip_problem(path: Path) -> str | None:
    """Why a file that starts as a zip archive is not a ``torch.save`` one (its entries hold a
    ``data.pkl``): cut short, or another archive; None when it is one, or not a zip archive at all."""
    import zipfile

    try:
        with open(path, "rb") as f:
            if f.read(4) != b"PK\x03\x04":
                return None
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except zipfile.BadZipFile:
        size = path.stat().st_size
        return f"a zip archive cut short at {size} bytes (no central directory), not a whole checkpoint: an interrupted download or copy? fetch it again"
    except OSError:
        return None
    except Exception as e:  # noqa: BLE001 - e.g. UnicodeDecodeError: a file name in its directory that is not UTF-8
        return f"a damaged zip archive ({type(e).__name__}: {_first_line(e, 100)}), not a readable checkpoint: fetch it again"
    if any(n.endswith("data.pkl") for n in names):
        return None
    shown = ", ".join(names[:3]) + (f", ... ({len(names)} files)" if len(names) > 3 else "")
    return f"a zip archive of {shown or 'nothing'}, not a checkpoint torch.save wrote: extract the checkpoint from it"


def _torch_load(path: Path, trust: bool) -> Any:
    """``torch.load`` on CPU: restricted unpickling with :data:`SAFE_GLOBALS`, or full when trusted;
    a zip checkpoint's entries are first checked against their CRC-32s (``torch.load`` does not)."""
    check_zip_entries(path, f"checkpoint {path}")
    if trust:
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001 - any failure of a trusted unpickle is "unreadable"
            raise (
                _by_safetensors_name(path, e)
                or not_a_torch_file(path)
                or SimpoolBenchError(f"checkpoint {path}: not a readable PyTorch checkpoint ({type(e).__name__}: {_first_line(e)})")
            ) from None
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Detected pickle protocol N": we word our own error
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        not_torch = not_a_torch_file(path)
        if not_torch is not None:
            raise not_torch from None
        blocked = _blocked_globals(path, e)
        if blocked:
            raise SimpoolBenchError(
                f"checkpoint {path}: refused by safe loading: its pickle needs {', '.join(blocked)}, which could run "
                f"arbitrary code when unpickled; if you trust this file, pass {TRUST_FLAG} (trust=True)"
            ) from None
        if "Weights only load failed" in str(e):
            detail = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", str(e), re.S)
            raise SimpoolBenchError(
                f"checkpoint {path}: not a file the safe (weights-only) loader can read "
                f"({_first_line(detail.group(1) if detail else e, 80)}); if it is a checkpoint you trust, pass {TRUST_FLAG}"
            ) from None
        raise SimpoolBenchError(
            f"checkpoint {path}: not a PyTorch checkpoint or safetensors file (unpickling failed: {_first_line(e)})"
        ) from None
    except Exception as e:  # noqa: BLE001 - zip/pickle/EOF errors all mean "not a checkpoint"
        raise (
            _by_safetensors_name(path, e)
            or not_a_torch_file(path)
            or SimpoolBenchError(
                f"checkpoint {path}: not a readable PyTorch checkpoint ({type(e).__name__}: {_first_line(e) or 'empty or truncated'})"
            )
        ) from None


def _looks_like_torch_pickle(path: Path) -> bool:
    """The file starts as ``torch.save`` writes: a zip archive (``PK\\x03\\x04``) or a pickle (PROTO 2-5)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head == b"PK\x03\x04" or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5)


def unreadable_safetensors(what: str, path: Path, err: BaseException, fix: str) -> SimpoolBenchError:
    """The one error of a file that safetensors cannot read: ``what`` names the file (and the flag
    that gave it); a PyTorch pickle under a safetensors name is said to be one, with ``fix``."""
    zip_error = _zip_problem(path)
    if zip_error:
        hint = f"; it is {zip_error}"
    else:
        hint = f"; it looks like a PyTorch pickle file (torch.save), not safetensors: {fix}" if _looks_like_torch_pickle(path) else ""
    return SimpoolBenchError(f"{what}: not a readable safetensors file ({_first_line(err)}){hint}")


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path), device="cpu")
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
    except Exception as e:  # noqa: BLE001 - SafetensorError and friends
        fix = "rename it to .pth and drop --format safetensors" if path.name.endswith(".safetensors") else "drop --format safetensors"
        raise unreadable_safetensors(f"checkpoint {path}", path, e, fix) from None
    return tensors, meta
