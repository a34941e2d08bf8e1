r"""A batched Dormand–Prince RK5(4) integrator for autonomous ODEs $\dot y = f(y)$.

The state is one real tensor ``y`` of shape ``(B, d)`` holding ``B`` independent trajectories;
``f`` maps ``(B, d) → (B, d)`` and is evaluated once per stage for the whole batch.

Step-size control is **per trajectory**: every trajectory keeps its own time ``t[b]`` and step
``h[b]``; a stage is evaluated for the whole batch with each row's own step, and the error
norm (RMS of the embedded 5th−4th order difference scaled by ``atol + rtol·|y|``) decides
acceptance row by row. Finished or failed rows take zero-length steps (their state is kept),
so the batch stays one vectorised tensor. Steps of the 5th-order solution are taken (local
extrapolation), with the usual controller ``h ← h · clip(0.9 · err^{-1/5}, 0.2, 5)``.

Outcomes per trajectory are integer codes (`STATUS`): a trial state that is not finite or lies
outside the domain (``inside``) is rejected and the step shrunk; a trajectory whose step falls
below ``16 · eps · t_end`` is stopped with ``"step_underflow"`` (or ``"left_domain"`` when the
rejections that caused it were domain exits), one that needs more than ``max_steps`` steps
with ``"max_steps"``.

`rk_fixed` takes equal steps of the same 5th-order scheme without error control (no
data-dependent branching, so it is also traceable by ``torch.func``); shooting uses it as its
Newton model, and the convergence-order tests use it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

#: Outcome codes of an adaptive integration, per trajectory.
STATUS = {0: "running", 1: "success", 2: "left_domain", 3: "step_underflow", 4: "max_steps"}
RUNNING, SUCCESS, LEFT_DOMAIN, UNDERFLOW, MAX_STEPS = 0, 1, 2, 3, 4

_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
)
_B5 = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84)
_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
_E = tuple(b5 - b4 for b5, b4 in zip(_B5 + (0.0,), _B4, strict=True))


def _stages(f: Callable, y: torch.Tensor, k1: torch.Tensor, h: torch.Tensor) -> list:
    """The six stage derivatives of one Dormand–Prince step; ``h`` is ``(B, 1)``."""
    ks = [k1]
    for row in _A[1:]:
        incr = sum(a * k for a, k in zip(row, ks, strict=False) if a != 0.0)
        ks.append(f(y + h * incr))
    return ks


def _step5(y: torch.Tensor, ks: list, h: torch.Tensor) -> torch.Tensor:
    return y + h * sum(b * k for b, k in zip(_B5, ks, strict=True) if b != 0.0)


def rk_fixed(
    f: Callable, y0: torch.Tensor, t_end: float | torch.Tensor, steps: int
) -> torch.Tensor:
    """Integrate with ``steps`` equal steps of the Dormand–Prince 5th-order scheme.

    No error control and no data-dependent branching: safe inside ``torch.func`` transforms.
    ``y0`` is ``(..., d)``; ``t_end`` a float or a tensor broadcastable to ``(..., 1)``.
    Global error O(h⁵).
    """
    h = torch.as_tensor(t_end, dtype=y0.dtype, device=y0.device) / steps
    y = y0
    for _ in range(steps):
        ks = _stages(f, y, f(y), h)
        y = _step5(y, ks, h)
    return y


@dataclass
class ODEResult:
    """Outcome of `dopri5` for a batch of ``B`` trajectories.

    Attributes:
        y: final states ``(B, d)`` (the last accepted state where a trajectory failed).
        ys: states at the requested output times ``(B, M, d)`` (NaN where not reached), or
            ``None`` when no output times were requested.
        t: time reached per trajectory ``(B,)``.
        status: int codes ``(B,)``, see `STATUS`.
        n_steps: accepted steps per trajectory ``(B,)``.
        n_rejected: rejected steps per trajectory ``(B,)``.
    """

    y: torch.Tensor
    ys: torch.Tensor | None
    t: torch.Tensor
    status: torch.Tensor
    n_steps: torch.Tensor
    n_rejected: torch.Tensor

    @property
    def success(self) -> torch.Tensor:
        """bool ``(B,)``: the trajectory reached the final time."""
        return self.status == SUCCESS

    def reasons(self) -> dict[str, int]:
        """Counts of each outcome, e.g. ``{"success": 9, "left_domain": 1}``."""
        codes, counts = torch.unique(self.status, return_counts=True)
        return {STATUS[int(c)]: int(k) for c, k in zip(codes, counts, strict=True)}


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.square().mean(-1).sqrt()


def dopri5(
    f: Callable,
    y0: torch.Tensor,
    t_end: float = 1.0,
    *,
    rtol: float = 1e-10,
    atol: float = 1e-10,
    max_steps: int = 2000,
    inside: Callable | None = None,
    t_eval: torch.Tensor | None = None,
) -> ODEResult:
    """Adaptive, error-controlled integration of ``ẏ = f(y)`` from t = 0 to ``t_end``.

    Args:
        f: batched right-hand side ``(B, d) → (B, d)`` (autonomous).
        y0: initial states ``(B, d)``, real.
        t_end: final time (> 0).
        rtol, atol: per-component tolerances; a step is accepted when
            ``rms(err / (atol + rtol · max(|y|, |y_new|))) ≤ 1``.
        max_steps: cap on accepted plus rejected steps per trajectory.
        inside: optional ``(B, d) → bool (B,)``; trial states where it is False are rejected.
        t_eval: optional increasing output times in ``[0, t_end]`` ``(M,)``; steps are shortened
            to land on them and the states there are returned in ``ys``.

    Returns:
        An `ODEResult`.
    """
    B, d = y0.shape
    dtype, device = y0.dtype, y0.device
    eps = torch.finfo(dtype).eps
    t_end = float(t_end)
    t = torch.zeros(B, dtype=dtype, device=device)
    y = y0.clone()
    k1 = f(y)
    status = torch.zeros(B, dtype=torch.long, device=device)
    n_steps = torch.zeros(B, dtype=torch.long, device=device)
    n_rej = torch.zeros(B, dtype=torch.long, device=device)
    domain_rejects = torch.zeros(B, dtype=torch.bool, device=device)
    # Initial step (Hairer–Wanner, first phase).
    sc = atol + rtol * y.abs()
    d0, d1 = _rms(y / sc), _rms(k1 / sc)
    h = torch.where((d0 > 1e-5) & (d1 > 1e-5), 0.01 * d0 / d1, torch.full_like(d0, 1e-6))
    h = h.clamp(max=t_end)

    if t_eval is not None:
        t_eval = torch.as_tensor(t_eval, dtype=dtype, device=device)
        M = t_eval.shape[0]
        ys = torch.full((B, M, d), float("nan"), dtype=dtype, device=device)
        nxt = torch.zeros(B, dtype=torch.long, device=device)
        at0 = t_eval <= 0
        ys[:, at0] = y[:, None, :]
        nxt += int(at0.sum())
        t_targets = torch.cat([t_eval, t_eval.new_full((1,), t_end)])
    else:
        ys = None

    min_h = 16 * eps * t_end
    for _ in range(max_steps):
        active = status == RUNNING
        if not bool(active.any()):
            break
        target = t_targets[nxt.clamp(max=t_targets.shape[0] - 1)] if ys is not None else t_end
        remaining = torch.as_tensor(target, dtype=dtype, device=device) - t
        clipped = h >= remaining
        h_eff = torch.where(active, torch.minimum(h, remaining), torch.zeros_like(h))
        hb = h_eff[:, None]
        ks = _stages(f, y, k1, hb)
        y_new = _step5(y, ks, hb)
        k7 = f(y_new)
        err_vec = hb * sum(e * k for e, k in zip(_E, ks + [k7], strict=True) if e != 0.0)
        scale = atol + rtol * torch.maximum(y.abs(), y_new.abs())
        err = _rms(err_vec / scale)
        finite = torch.isfinite(y_new).all(-1) & torch.isfinite(err) & torch.isfinite(k7).all(-1)
        ok_domain = inside(torch.where(finite[:, None], y_new, y)) if inside is not None else True
        ok_domain = torch.as_tensor(ok_domain, device=device) & finite
        err = torch.where(finite & ok_domain, err, torch.full_like(err, float("inf")))
        accept = active & (err <= 1)
        reject = active & ~accept
        domain_rejects = torch.where(accept, False, domain_rejects | (reject & ~ok_domain))

        y = torch.where(accept[:, None], y_new, y)
        k1 = torch.where(accept[:, None], k7, k1)
        t = torch.where(accept, t + h_eff, t)
        n_steps += accept.long()
        n_rej += reject.long()

        factor = (0.9 * err.clamp_min(1e-30) ** -0.2).clamp(0.2, 5.0)
        factor = torch.where(accept, factor, torch.minimum(factor, torch.full_like(factor, 0.5)))
        h_new = h_eff * factor
        # After a step shortened to land on a target, do not let the short step set the pace.
        h_new = torch.where(accept & clipped, torch.maximum(h_new, h), h_new)
        h = torch.where(active, h_new, h)

        if ys is not None:
            landed = accept & clipped & (nxt < M)
            if bool(landed.any()):
                idx = landed.nonzero().squeeze(-1)
                ys[idx, nxt[idx]] = y[idx]
                nxt = nxt + landed.long()
        done = active & (t >= t_end * (1 - 4 * eps))
        status = torch.where(done, SUCCESS, status)
        under = (status == RUNNING) & (h < min_h)
        status = torch.where(under & domain_rejects, LEFT_DOMAIN, status)
        status = torch.where(under & ~domain_rejects, UNDERFLOW, status)
    status = torch.where(status == RUNNING, MAX_STEPS, status)
    return ODEResult(y=y, ys=ys, t=t, status=status, n_steps=n_steps, n_rejected=n_rej)
