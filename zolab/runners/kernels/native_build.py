"""Compile and load the native CPU perturbation kernel (:file:`native_perturb.c`) on first use.

Why at run time: the kernel is built for the CPU it runs on (``-march=native``: AVX-512 or AVX2
where present), which no prebuilt wheel can be. The shared library is cached per (source, flags,
compiler, CPU) under ``$ZOLAB_CACHE/kernels`` (a home shared by machines with different CPUs gets
one library each), built into a temporary name and renamed, so concurrent workers never load a
half-written file. z does not depend on the flags: the kernel uses exact IEEE arithmetic only
(``-ffp-contract=off``, no fast-math), so every build computes the same bits.

Only the standard library and ctypes: ``zolab.runners`` stays importable without a compiler, and
:func:`load` says why the kernel is unavailable instead of failing the import.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

SOURCE = Path(__file__).with_name("native_perturb.c")
ABI = 1
#: tried in order: the CPU's own vector units first, then a portable build
FLAG_SETS = (
    ("-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-fopenmp-simd"),
    ("-O3", "-ffp-contract=off", "-fno-math-errno"),
)
_LOCK = threading.Lock()
_LOADED: ctypes.CDLL | None = None
_ERROR: str | None = None


class NativeKernelUnavailable(RuntimeError):
    """The native kernel could not be built or loaded here (the message says why and what to do)."""


def compiler() -> str | None:
    """``$CC``, else the first of cc / gcc / clang on PATH."""
    env = os.environ.get("CC")
    if env:
        return shutil.which(env) or env
    for name in ("cc", "gcc", "clang"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _cpu_fingerprint() -> str:
    """What -march=native depends on: the CPU's model and feature flags (Linux), else platform facts."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
        lines = [ln for ln in text.splitlines() if ln.startswith(("flags", "model name", "Features", "CPU part"))]
        return "\n".join(sorted(set(lines)))
    except OSError:
        return f"{platform.machine()} {platform.processor()}"


def _compiler_version(cc: str) -> str:
    try:
        return subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def cache_folder() -> Path:
    from zolab.config import cache_dir  # stdlib-only settings module

    return cache_dir() / "kernels"


def _library_path(build_id: str, flags: tuple[str, ...]) -> Path:
    key = hashlib.sha256("\0".join([build_id, " ".join(flags)]).encode()).hexdigest()[:16]
    return cache_folder() / f"zolab-native-{key}.so"


def _build_id(cc: str) -> str:
    """What every build's name depends on besides its flags: source, compiler, CPU, ABI (read once per load)."""
    return "\0".join([SOURCE.read_text(), _compiler_version(cc), _cpu_fingerprint(), platform.machine(), str(ABI)])


def _compile(cc: str, flags: tuple[str, ...], out: Path) -> str | None:
    """Build the library at ``out``; None on success, else the compiler's complaint."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out.stem + "-", suffix=".tmp.so", dir=out.parent)
    os.close(fd)
    cmd = [cc, *flags, "-std=c11", "-shared", "-fPIC", str(SOURCE), "-o", tmp, "-lm"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        Path(tmp).unlink(missing_ok=True)
        return f"{' '.join(cmd)}: {exc}"
    if done.returncode != 0:
        Path(tmp).unlink(missing_ok=True)
        return f"{' '.join(cmd)} exited {done.returncode}: {done.stderr.strip()[-600:]}"
    os.replace(tmp, out)
    return None


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    i64, u32, u64, f32, i32, vp = (ctypes.c_int64, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_float,
                                   ctypes.c_int, ctypes.c_void_p)
    lib.zolab_native_abi.restype = i32
    lib.zolab_scratch_bytes.restype = ctypes.c_size_t
    lib.zolab_apply_f32.restype = None
    lib.zolab_apply_f32.argtypes = [vp, i64, i64, i64, u32, i32, vp, vp, vp, vp, f32, i32, i32, i32, u32, vp, vp]
    lib.zolab_z_f32.restype = None
    lib.zolab_z_f32.argtypes = [vp, i64, i64, i64, u32, u64, u64, f32, i32, i32, u32, vp, f32, vp]
    lib.zolab_sumsq.restype = ctypes.c_double
    lib.zolab_sumsq.argtypes = [i64, i64, i64, u32, u64, u64, i32, u32, vp, ctypes.POINTER(i64), vp]
    lib.zolab_philox.restype = None
    lib.zolab_philox.argtypes = [u32, u32, u64, i32, vp]
    lib.zolab_box_muller.restype = None
    lib.zolab_box_muller.argtypes = [vp, vp, i64, vp, vp]
    return lib


def load() -> ctypes.CDLL:
    """The kernel library, built on first use; :class:`NativeKernelUnavailable` with the reason otherwise."""
    global _LOADED, _ERROR
    with _LOCK:
        if _LOADED is not None:
            return _LOADED
        if _ERROR is not None:
            raise NativeKernelUnavailable(_ERROR)
        cc = compiler()
        if cc is None:
            _ERROR = ("the native CPU kernel needs a C compiler and none was found (set CC, or install gcc/clang); "
                      "use kernel 'torch' meanwhile")
            raise NativeKernelUnavailable(_ERROR)
        problems = []
        build_id = _build_id(cc)
        for flags in FLAG_SETS:
            path = _library_path(build_id, flags)
            if not path.exists():
                problem = _compile(cc, flags, path)
                if problem:
                    problems.append(problem)
                    continue
            try:
                lib = _declare(ctypes.CDLL(str(path)))
            except OSError as exc:
                problems.append(f"loading {path}: {exc}")
                continue
            if lib.zolab_native_abi() != ABI:
                problems.append(f"{path}: ABI {lib.zolab_native_abi()} != {ABI}")
                continue
            _LOADED = lib
            return lib
        _ERROR = "the native CPU kernel could not be built: " + " | ".join(problems) + "; use kernel 'torch'"
        raise NativeKernelUnavailable(_ERROR)


def available() -> tuple[bool, str]:
    """(usable, reason when not) without raising."""
    try:
        load()
    except NativeKernelUnavailable as exc:
        return False, str(exc)
    return True, ""
