"""The two run profiles: ``cpu`` (small, minutes on a laptop or CI) and ``gpu`` (paper-sized).

``resolve_profile()`` is ``"gpu"`` when CUDA is available and ``"cpu"`` otherwise; the
environment variable ``TRANSFORMER_PROFILE`` (``cpu`` or ``gpu``) overrides it.  Notebooks print
``banner()`` first so every stored output says which profile and which hardware produced it.
"""

from __future__ import annotations

import os
import platform

import torch

PROFILES = ("cpu", "gpu")
# Set by bench/gpu_run.sh's rehearsal only: lets the gpu profile run on a CPU (with tiny budgets)
REHEARSAL_ENV = "TRANSFORMER_REHEARSAL"


def resolve_profile(value: str | None = None) -> str:
    """The profile named by ``value``, else by ``TRANSFORMER_PROFILE``, else by the hardware.

    Asking for the gpu profile without CUDA is a ``ValueError`` whose one line says what to do
    (``$TRANSFORMER_REHEARSAL=1`` allows it)."""
    asked = "--profile gpu" if value is not None else "TRANSFORMER_PROFILE=gpu"
    value = os.environ.get("TRANSFORMER_PROFILE") if value is None else value
    if not value:
        return "gpu" if torch.cuda.is_available() else "cpu"
    value = value.strip().lower()
    if value not in PROFILES:
        raise ValueError(f"TRANSFORMER_PROFILE must be one of {PROFILES}, got {value!r}")
    if value == "gpu" and not torch.cuda.is_available() and os.environ.get(REHEARSAL_ENV) != "1":
        raise ValueError(f"{asked} needs a CUDA GPU, but torch.cuda.is_available() is False on "
                         "this machine: run it where CUDA works, or use the cpu profile "
                         "(--profile cpu)")
    return value


def device(profile: str | None = None) -> torch.device:
    """``cuda`` for the gpu profile, ``cpu`` otherwise."""
    return torch.device("cuda" if (profile or resolve_profile()) == "gpu" else "cpu")


def _cpuinfo(field: str) -> str | None:
    """The first ``field`` of Linux's /proc/cpuinfo ("model name", "flags"), None elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_bf16_flags() -> list[str]:
    """The CPU's native bf16 instruction sets (``avx512_bf16``, ``amx_bf16``), [] if unknown."""
    return sorted(set((_cpuinfo("flags") or "").split()) & {"avx512_bf16", "amx_bf16"})


def cpu_has_native_bf16() -> bool | None:
    """Whether this x86 CPU multiplies bfloat16 natively (AVX512-BF16 or AMX); None where
    /proc/cpuinfo has no x86 flags (not Linux, or an Arm CPU): this project has not measured
    bf16 there."""
    return None if _cpuinfo("flags") is None else bool(cpu_bf16_flags())


def hardware() -> str:
    """A one-line description of the machine: accelerator or CPU, threads, torch version."""
    if torch.cuda.is_available():
        where = f"GPU {torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    else:
        where = f"CPU {cpu_name()} ({torch.get_num_threads()} threads)"
    return f"{where}, torch {torch.__version__}, Python {platform.python_version()}"


def describe() -> tuple[str, str]:
    """(profile name, hardware description)."""
    return resolve_profile(), hardware()


def banner() -> str:
    """The sentence each notebook prints at the top."""
    name, where = describe()
    return f"Outputs produced with profile {name!r} on {where}."
