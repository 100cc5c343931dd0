"""The machine a benchmark ran on, in one line: every speed figure says which machine it came from."""

from __future__ import annotations

import os


def this_machine() -> str:
    """CPU model, cores, whether it has AMX, its bfloat16 flags, and the load average now."""
    from tlcore.inference.verdicts import machine

    found = machine()
    flags = found["bfloat16_flags"]
    amx = "AMX" if any(flag.startswith("amx") for flag in flags) else "no AMX"
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (f"{found['cpu']}, {found['cores']} cores, {amx} (bfloat16 flags: {', '.join(flags) or 'none'}); "
            f"load average {load}")
