"""Range checks of task and engine options, run before any input is read or model loaded.

Each options dataclass has a ``validate()`` method built from these; each raises InputError with
one paragraph naming the option (by its command-line flag), the value and the allowed range. The
checks that need the model (``--start-step`` against its T, the region against its regions) stay
with the task, which runs them before any sampling.
"""

from __future__ import annotations

import math
from typing import Optional

from .errors import InputError

# torch.Generator.manual_seed takes any integer that fits in 64 bits unsigned.
MAX_SEED = 2**64 - 1


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_int(value, flag: str, minimum: int, maximum: Optional[int] = None, why: str = "") -> None:
    """``value`` is a whole number in [minimum, maximum]."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    ok = ok and (maximum is None or value <= maximum)
    if not ok:
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise InputError(f"{flag} must be a whole number {bound} (got {value!r}){why}.")


def check_number(value, flag: str, minimum: float = -math.inf, maximum: float = math.inf, *,
                 low_open: bool = False, high_open: bool = False, why: str = "") -> None:
    """``value`` is a finite number in the range (open or closed at each end)."""
    ok = _is_number(value)
    if ok:
        ok = (value > minimum if low_open else value >= minimum) and (value < maximum if high_open else value <= maximum)
    if not ok:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        low = "-inf" if minimum == -math.inf else f"{minimum:g}"
        high = "inf" if maximum == math.inf else f"{maximum:g}"
        raise InputError(f"{flag} must be a finite number in {left}{low}, {high}{right} (got {value!r}){why}.")


def check_seed(seed: Optional[int], count: int = 1) -> None:
    """None (a random seed) or a whole number such that seed .. seed + count - 1 fit in 64 bits."""
    if seed is None:
        return
    check_int(seed, "--seed", 0, MAX_SEED - (count - 1),
              why=" (seeds are unsigned 64-bit numbers" + (f"; {count} samples use seed .. seed + {count - 1}" if count > 1 else "") + ")")


def check_steps(steps, flag: str = "--steps") -> None:
    check_int(steps, flag, 1, why=" (the sampler caps it at what the start step allows, and says so)")


def check_start(start_step: Optional[int]) -> None:
    if start_step is not None:
        check_int(start_step, "--start-step", 1, why=" (the upper limit is the model's T - 1)")


def check_noise_hu(noise_hu: Optional[float]) -> None:
    if noise_hu is not None:
        check_number(noise_hu, "--noise-hu", 0.0, why=" (the noise standard deviation of the input in HU; "
                     "leave it out to have it estimated)")


def check_lambda(lam: float) -> None:
    check_number(lam, "--lambda", 0.0, low_open=True, why=" (DiffPIR's weight of the prior; the paper uses 10)")


def check_eta(eta: float) -> None:
    check_number(eta, "eta", 0.0, 1.0, why=" (0 = deterministic DDIM, 1 = DDPM-like)")


def check_choice(value, flag: str, choices) -> None:
    """``value`` is one of ``choices``."""
    if value not in tuple(choices):
        raise InputError(f"{flag} must be one of {', '.join(map(str, choices))} (got {value!r}).")
