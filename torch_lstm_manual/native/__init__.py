"""Compiled time loops for :class:`~torch_lstm_manual.functional.LSTMFunction`.

The C++ sources here hold the same two loops as
:func:`~torch_lstm_manual.reference.forward_loop` and
:func:`~torch_lstm_manual.reference.backward_loop` (same arguments, same
results), for float32 and float64 tensors on the CPU, and the two passes
``LSTMFunction`` runs, :func:`forward_input` and :func:`backward_input`. They
are compiled with ``torch.utils.cpp_extension.load`` the first time a backend
is resolved (``backend="auto"`` or ``"native"``), never at import, and cached
in torch's extension directory (``TORCH_EXTENSIONS_DIR``, default
``~/.cache/torch_extensions``), so later processes only load the library.

Files: ``bindings.cpp`` (Python bindings, choice of loop; those of the
variants in ``variant_bindings.cpp`` and, for their passes from the inputs
a chunk of steps at a time, ``variant_input.cpp``, of LSTMCell's step in
``step_bindings.cpp``, the argument checks they share in ``checks.h`` and
``variant_args.h``),
``loops.h`` (the loop drivers' interface), ``tiled_loops.cpp`` (float32 on
register tiles, ``tiles.cpp``/``tiles.h``), ``blas_loops.cpp`` (BLAS
products, ``blas.cpp``/``blas.h``), ``variant_loops.cpp``/``variant_loops.h``
(the loops of the variants: layer norm, peepholes, zoneout, recurrent
dropout; their cell in ``cells/variants.h``), ``parallel.h`` (thread team),
``buffers.cpp``/``buffers.h`` (kept buffers), ``cell.h`` and ``cells.cpp``
(the cell arithmetic of a row, for every kind), ``cells/lstm.h`` (the LSTM
cell; what a new cell kind provides) over ``vector_math.h`` (scalar, AVX2
and AVX-512 primitives).

The first build (about 40 s) says so once on stderr, with where it is
cached; a process that finds the build current says nothing.

When the build succeeds, :mod:`torch_lstm_manual.backends` runs the loops as
its ``"native"`` backend (:mod:`torch_lstm_manual.backends.native` adapts them).
When it fails (no compiler, no ninja, ...), ``auto`` runs the Python loops
after one warning per process that names the cause, and ``"native"`` raises.
The environment variable ``TORCH_LSTM_MANUAL_NATIVE`` changes that:
``0`` skips the build (no warning, the Python loops run), and ``require``
makes a failed build an error for ``auto`` too (RuntimeError), for test runs
and CI, where a silent fallback would leave the native loops untested.

The loops keep their large buffers for the next call once no tensor holds
them; :func:`empty_cache` frees them.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import sys
import tempfile
import threading
import warnings
from typing import Optional

import torch

ENV_SWITCH = "TORCH_LSTM_MANUAL_NATIVE"
_SOURCES = (
    "bindings.cpp", "variant_bindings.cpp", "variant_input.cpp", "step_bindings.cpp", "tiled_loops.cpp",
    "blas_loops.cpp", "variant_loops.cpp", "cells.cpp", "tiles.cpp", "blas.cpp", "buffers.cpp",
)

_DISABLED = ("0", "false", "off", "no")
_REQUIRED = "require"
# The wall time of a first build on a laptop, for the message that announces it.
_BUILD_SECONDS = 40

_lock = threading.Lock()
_tried = False
_error: Optional[str] = None  # why the native loops are unavailable, once tried
_ext = None  # the compiled module
_announced = False  # whether this process said that it compiles


def _switch() -> str:
    return os.environ.get(ENV_SWITCH, "1").strip().lower()


def required() -> bool:
    """Whether ``TORCH_LSTM_MANUAL_NATIVE=require``: a failed build raises
    instead of falling back to the Python loops (for tests and CI)."""
    return _switch() == _REQUIRED


def _fingerprint(sources, cflags, ldflags) -> str:
    """What a build is made from: the sources and the headers they include,
    the flags, torch and Python."""
    here = os.path.dirname(os.path.abspath(__file__))
    headers = sorted(glob.glob(os.path.join(here, "*.h")) + glob.glob(os.path.join(here, "cells", "*.h")))
    digest = hashlib.sha256()
    for path in [*sources, *headers]:
        with open(path, "rb") as handle:
            digest.update(handle.read())
    digest.update(repr((cflags, ldflags, torch.__version__, sys.version)).encode())
    return digest.hexdigest()


def _stamp_path(name: str) -> Optional[str]:
    """Where the fingerprint of the cached build ``name`` is kept, next to its
    library; None where this torch does not say where its builds go."""
    from torch.utils import cpp_extension

    build_directory = getattr(cpp_extension, "_get_build_directory", None)
    if build_directory is None:
        return None
    return os.path.join(build_directory(name, False), "torch_lstm_manual.sha256")


def _is_current(name: str, stamp: Optional[str], fingerprint: str) -> bool:
    """Whether the cache holds the library of exactly this build."""
    from torch.utils import cpp_extension

    if stamp is None:
        return True  # cannot tell: say nothing
    library = os.path.join(os.path.dirname(stamp), name + getattr(cpp_extension, "LIB_EXT", ".so"))
    try:
        with open(stamp, encoding="utf-8") as handle:
            return os.path.exists(library) and handle.read().strip() == fingerprint
    except OSError:
        return False


def _write_stamp(stamp: Optional[str], fingerprint: str) -> None:
    """Record the fingerprint of the build just loaded: a temporary file, then renamed."""
    if stamp is None:
        return
    try:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(stamp), prefix=".stamp.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(fingerprint + "\n")
        os.replace(tmp, stamp)
    except OSError:  # a read-only cache: the next process announces a build that is not needed
        pass


def _announce(stamp: Optional[str]) -> None:
    """Say once per process, before the compiler runs, what the wait is."""
    global _announced
    if _announced:
        return
    _announced = True
    where = os.path.dirname(os.path.dirname(stamp)) if stamp else "torch's extension directory"
    print(
        f"torch_lstm_manual: compiling the native LSTM loops once, about {_BUILD_SECONDS} s; cached in {where}",
        file=sys.stderr,
        flush=True,
    )


def _build(portable: bool = False):
    """Compile the extension (or load it from the cache) and return the module.

    ``portable`` leaves out what depends on this CPU and on torch's BLAS
    exporting its symbols (AVX2, direct sgemm_/dgemm_ calls): the fallback
    when the full build does not compile or load.
    """
    from torch.utils import cpp_extension

    here = os.path.dirname(os.path.abspath(__file__))
    name, cflags, ldflags = "torch_lstm_manual_native", ["-O3"], []
    config = torch.__config__.show()
    if "OpenMP" in torch.__config__.parallel_info().split("ATen parallel backend:")[-1]:
        # One parallel region per loop, in the OpenMP runtime torch already loaded.
        cflags, ldflags = cflags + ["-fopenmp"], ldflags + ["-fopenmp"]
    if portable:
        name += "_portable"
    else:
        capability = torch.backends.cpu.get_cpu_capability()
        if capability in ("AVX2", "AVX512"):
            # The vectorised gate arithmetic of cells.cpp and the register tiles
            # of tiles.cpp; the name keeps the builds for different CPUs apart
            # in a shared cache.
            name, cflags = name + "_avx2", cflags + ["-mavx2", "-mfma"]
        if capability == "AVX512":
            name, cflags = name + "_avx512", cflags + ["-mavx512f"]
        if re.search(r"\bBLAS_INFO=\w", config):
            cflags.append("-DLSTM_FORTRAN_BLAS")  # call sgemm_/dgemm_ of torch's BLAS directly
        if re.search(r"\bBLAS_INFO=mkl\b", config):
            cflags.append("-DLSTM_MKL")  # single-threaded MKL calls inside the loops' threads
    sources = [os.path.join(here, s) for s in _SOURCES]
    fingerprint, stamp = _fingerprint(sources, cflags, ldflags), _stamp_path(name)
    if not _is_current(name, stamp, fingerprint):
        _announce(stamp)
    module = cpp_extension.load(name, sources, extra_cflags=cflags, extra_ldflags=ldflags, verbose=False)
    _write_stamp(stamp, fingerprint)
    return module


def load() -> Optional[str]:
    """Build the native loops (or load them from the cache), once per process.

    Returns None when they are loaded, else why not.
    Raises RuntimeError instead, on this call and every later one, when the
    build failed under ``TORCH_LSTM_MANUAL_NATIVE=require``.
    """
    global _tried, _error, _ext
    if _ext is not None:  # loaded: no lock on the path every call takes
        return None
    with _lock:
        if _tried:
            if _error is not None and required():
                raise RuntimeError(_required_message(_error))
            return _error
        _tried = True
        if _switch() in _DISABLED:
            _error = f"disabled by the environment variable {ENV_SWITCH}={os.environ[ENV_SWITCH]}"
            return _error
        try:
            try:
                _ext = _build()
            except Exception:
                _ext = _build(portable=True)
        except Exception as error:  # a failed build of any kind means: run the Python loops
            # The first line says what failed; a compiler's own message is at the end.
            lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [""]
            cause = lines[0][:200] + (" ... " + " ".join(lines[1:])[-300:] if len(lines) > 1 else "")
            _error = f"the C++ extension failed to build ({type(error).__name__}: {cause})"
            if required():
                raise RuntimeError(_required_message(_error)) from error
            warnings.warn(f"torch_lstm_manual: {_error}; using the Python loops instead.", RuntimeWarning, stacklevel=2)
            return _error
        return None


def _required_message(error: str) -> str:
    return (f"torch_lstm_manual: {error}, and {ENV_SWITCH}={os.environ.get(ENV_SWITCH, '')} does not allow "
            "the fallback to the Python loops")


def empty_cache() -> int:
    """Free the large buffers the native loops keep for reuse and no tensor
    holds any more (saved gate activations, gate gradients), as
    ``torch.cuda.empty_cache`` does for CUDA memory. Returns the bytes freed.

    The loops keep them because fresh memory of that size costs page faults
    and zeroing on every call; a training loop reuses them step after step.
    """
    return _ext.release_buffers() if _ext is not None else 0


def unavailable(x: torch.Tensor) -> Optional[str]:
    """None where the native loops run tensors like ``x`` (float32 or float64 on
    the CPU, once the extension is built: the first such call builds it), else why not."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return f"it runs float32 and float64 tensors on the CPU; got a {x.dtype} tensor on {x.device}"
    return load()


def require(x: torch.Tensor) -> None:
    """Raise RuntimeError, saying why, unless the native loops run tensors like ``x``."""
    reason = unavailable(x)
    if reason is not None:
        raise RuntimeError(f"backend='native' is not available: {reason}. Use backend='auto' or 'python'.")
