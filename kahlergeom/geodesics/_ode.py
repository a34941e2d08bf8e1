r"""Initial-value integrators for autonomous ODEs $\dot y = f(y)$, batched over trajectories.

The state is one real tensor ``y`` of shape ``(B, d)`` holding ``B`` independent trajectories;
``f`` maps ``(B, d) → (B, d)`` and is evaluated once per stage for the whole batch.

`Integrator` is the extension point: a subclass implements
``integrate(f, y0, t_end, *, inside=None, t_eval=None) -> ODEResult``. Two are provided:

* `Dopri5`: adaptive Dormand–Prince RK5(4) with **per-trajectory** step control: every
  trajectory keeps its own time ``t[b]`` and step ``h[b]``; a stage is evaluated for the whole
  batch with each row's own step, and the error norm (RMS of the embedded 5th−4th order
  difference scaled by ``atol + rtol·|y|``) decides acceptance row by row. Finished or failed rows
  take zero-length steps, so the batch stays one vectorised tensor. Steps of the 5th-order
  solution are taken (local extrapolation), with the controller
  ``h ← h · clip(0.9 · err^{-1/5}, 0.2, 5)``.
* `RK4`: the classical fixed-step fourth-order Runge–Kutta scheme.

Outcomes per trajectory are integer codes (see `kahlergeom.geodesics.STATUS_NAMES`): a trial state
that is not finite or lies outside the domain (``inside``) is rejected and the step shrunk; a
trajectory whose step falls below ``16 · eps · t_end`` is stopped with ``"step_underflow"`` (or
``"left_domain"`` when the rejections that caused it were domain exits), one that needs more
than ``max_steps`` steps with ``"max_steps"``. A right-hand side that is not finite at a stage
point *inside* the domain (the metric field, e.g. a decoder, returned NaN or inf there) is not a
domain exit: shrinking the step until it underflows cannot help, and after
`NON_FINITE_REJECTS` such rejections ahead of the trajectory (`RK4`: the first) it is stopped
with ``"non_finite"``.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from kahlergeom._checks import check_optional_positive, check_positive_int
from kahlergeom.geodesics._tableaux import _A8, _B8, _D8, _E8_3, _E8_5

#: Outcome codes shared by every geodesic result (initial- and boundary-value problems).
STATUS = {
    0: "running",
    1: "success",
    2: "left_domain",
    3: "step_underflow",
    4: "max_steps",
    5: "speed_drift",
    6: "not_converged",
    7: "conjugate_point",
    8: "non_finite",
}
RUNNING, SUCCESS, LEFT_DOMAIN, UNDERFLOW, MAX_STEPS = 0, 1, 2, 3, 4
SPEED_DRIFT, NOT_CONVERGED, CONJUGATE_POINT, NON_FINITE = 5, 6, 7, 8

#: One default for every ``max_steps`` knob: a geodesic of a smooth chart metric needs tens to a
#: few hundred adaptive steps at 1e-10; 4000 leaves room for trajectories near a domain's edge.
DEFAULT_MAX_STEPS = 4000
#: Steps shorter than this many ulps of the final time cannot make progress.
UNDERFLOW_ULPS = 16
#: Hairer–Wanner starting step: fraction of |y|/|f(y)|, and the fallback when either is tiny.
INITIAL_STEP_FRACTION, INITIAL_STEP_FALLBACK, INITIAL_STEP_TINY = 0.01, 1e-6, 1e-5
#: Step-size controller of Dopri5: safety factor and the clip of the growth factor
#: (standard values; after a rejection the step at least halves).
SAFETY, MIN_FACTOR, MAX_FACTOR, MAX_FACTOR_AFTER_REJECT = 0.9, 0.2, 5.0, 0.5
#: Dopri5 steps rejected because the right-hand side was not finite at a stage point inside the
#: domain, after which the trajectory is stopped with ``"non_finite"``. Each rejection shrinks the
#: step fivefold and caps it there until the trajectory has passed the time the rejected step
#: would have reached (then the count restarts: the bad point was off the path). The third
#: rejection before that puts the non-finite point within 1/25 of the first rejected step ahead
#: of the trajectory, instead of letting the step shrink towards underflow (the former
#: behaviour, slow and reported as ``"left_domain"``).
NON_FINITE_REJECTS = 3

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
#: Dense output of the Dormand–Prince pair (Shampine's fourth-order continuous extension):
#: within an accepted step, y(t + θh) = y + h Σ_k k_k Σ_j P[k][j] θ^{j+1} for the seven stage
#: derivatives k_k (the seventh at the new state). At θ = 1 the row sums are the fifth-order
#: weights `_B5`, and at θ = 0 the state itself (tests/test_geodesics.py checks both ends and the
#: order).
_P_DENSE = (
    (1.0, -8048581381 / 2820520608, 8663915743 / 2820520608, -12715105075 / 11282082432),
    (0.0, 0.0, 0.0, 0.0),
    (0.0, 131558114200 / 32700410799, -68118460800 / 10900136933, 87487479700 / 32700410799),
    (0.0, -1754552775 / 470086768, 14199869525 / 1410260304, -10690763975 / 1880347072),
    (
        0.0,
        127303824393 / 49829197408,
        -318862633887 / 49829197408,
        701980252875 / 199316789632,
    ),
    (0.0, -282668133 / 205662961, 2019193451 / 616988883, -1453857185 / 822651844),
    (0.0, 40617522 / 29380423, -110615467 / 29380423, 69997945 / 29380423),
)


@dataclass
class ODEResult:
    """Outcome of an `Integrator` for a batch of ``B`` trajectories.

    Attributes:
        y: final states ``(B, d)`` (the last accepted state where a trajectory failed).
        ys: states at the requested output times ``(B, M, d)`` (NaN where not reached), or
            ``None`` when no output times were requested.
        t: time reached per trajectory ``(B,)``.
        status: int codes ``(B,)``, see `kahlergeom.geodesics.STATUS_NAMES`.
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


def reasons(status: torch.Tensor) -> dict[str, int]:
    """Counts of each outcome in an int status tensor, e.g. ``{"success": 9, "left_domain": 1}``."""
    codes, counts = torch.unique(status, return_counts=True)
    return {STATUS[int(c)]: int(k) for c, k in zip(codes, counts, strict=True)}


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.square().mean(-1).sqrt()


class Integrator(abc.ABC):
    """An initial-value integrator: implement `integrate`.

    A subclass is usually a frozen dataclass of options that validates them in
    ``__post_init__``. `kahlergeom.geodesics.exp`, `transport`, `sample_geodesic` and the
    shooting stage of the boundary-value solvers accept any instance as ``integrator=``.
    """

    @abc.abstractmethod
    def integrate(
        self,
        f: Callable,
        y0: torch.Tensor,
        t_end: float = 1.0,
        *,
        inside: Callable | None = None,
        t_eval: torch.Tensor | None = None,
    ) -> ODEResult:
        """Integrate ``ẏ = f(y)`` from t = 0 to ``t_end`` for every row of ``y0`` ``(B, d)``.

        Args:
            f: batched right-hand side ``(B, d) → (B, d)`` (autonomous, real).
            y0: initial states ``(B, d)``, real.
            t_end: final time (> 0).
            inside: optional ``(B, d) → bool (B,)``; states where it is False are outside the
                domain (a trajectory that cannot avoid them fails with ``"left_domain"``); a
                trajectory that meets a non-finite ``f`` at states inside it fails with
                ``"non_finite"``.
            t_eval: optional increasing output times in ``[0, t_end]`` ``(M,)``; the states there
                are returned in ``ys`` ``(B, M, d)``.

        Returns:
            An `ODEResult` with one status code per trajectory.
        """


@dataclass(frozen=True)
class _EmbeddedRK(Integrator):
    """Adaptive embedded Runge–Kutta pair with per-trajectory step control (the shared loop of
    `Dopri5` and `Dop853`); a subclass supplies the tableau through `_trial`, `_dense` and
    `_stage_points`, and the controller exponent ``ERROR_EXPONENT``."""

    rtol: float | None = None
    atol: float | None = None
    max_steps: int = DEFAULT_MAX_STEPS

    #: Exponent of the step-size controller, −1 / (order of the error estimate + 1).
    ERROR_EXPONENT = -0.2

    def __post_init__(self):
        check_optional_positive(self.rtol, "rtol")
        check_optional_positive(self.atol, "atol")
        check_positive_int(self.max_steps, "max_steps")

    def tolerances(self, dtype: torch.dtype) -> tuple[float, float]:
        """``(rtol, atol)`` for states of ``dtype`` (the options, or the dtype's defaults)."""
        low = dtype in (torch.float32, torch.complex64)
        rtol = self.rtol if self.rtol is not None else (1e-5 if low else 1e-10)
        atol = self.atol if self.atol is not None else (1e-6 if low else 1e-10)
        return rtol, atol

    @abc.abstractmethod
    def _trial(self, f, y, k1, h, scale_of):
        """One trial step from ``y`` with ``k1 = f(y)`` and steps ``h`` ``(B, 1)``: returns
        ``(y_new, ks, err)``, the stage derivatives ``ks`` ending with ``f(y_new)`` and the
        scaled error norm ``err`` ``(B,)`` (accept where ≤ 1); ``scale_of(y_new)`` gives the
        error scale ``atol + rtol·max(|y|, |y_new|)``."""

    @abc.abstractmethod
    def _dense(self, f, y, ks, h, theta):
        """States at ``t + θh`` inside an accepted step: ``y`` ``(R, d)``, the step's ``ks``
        (rows R), ``h`` ``(R,)``, ``theta`` ``(R, M)`` → ``(R, M, d)``."""

    @abc.abstractmethod
    def _stage_points(self, y, ks, h, y_new):
        """``(point, derivative)`` of every stage after the first (the last at ``y_new``)."""

    def integrate(self, f, y0, t_end=1.0, *, inside=None, t_eval=None) -> ODEResult:
        B, d = y0.shape
        dtype, device = y0.dtype, y0.device
        rtol, atol = self.tolerances(dtype)
        eps = torch.finfo(dtype).eps
        t_end = float(t_end)
        t = torch.zeros(B, dtype=dtype, device=device)
        y = y0.clone()
        k1 = f(y)
        status = torch.zeros(B, dtype=torch.long, device=device)
        n_steps = torch.zeros(B, dtype=torch.long, device=device)
        n_rej = torch.zeros(B, dtype=torch.long, device=device)
        domain_rejects = torch.zeros(B, dtype=torch.bool, device=device)
        # Rejections for a non-finite field inside the domain, the time the last one would have
        # reached, and the step cap held until the trajectory passes that time.
        n_non_finite = torch.zeros(B, dtype=torch.long, device=device)
        nf_until = torch.full((B,), -math.inf, dtype=dtype, device=device)
        nf_cap = torch.full((B,), math.inf, dtype=dtype, device=device)
        status = _stop_non_finite_start(status, inside, y, k1)
        # Initial step (Hairer–Wanner, first phase).
        sc = atol + rtol * y.abs()
        d0, d1 = _rms(y / sc), _rms(k1 / sc)
        big = (d0 > INITIAL_STEP_TINY) & (d1 > INITIAL_STEP_TINY)
        h = torch.where(
            big, INITIAL_STEP_FRACTION * d0 / d1, torch.full_like(d0, INITIAL_STEP_FALLBACK)
        )
        h = h.clamp(max=t_end)
        ys, t_targets, nxt, M = _output_buffer(y, t_eval, t_end)

        min_h = UNDERFLOW_ULPS * eps * t_end
        for _ in range(self.max_steps):
            active = status == RUNNING
            if not bool(active.any()):
                break
            remaining = t_end - t
            clipped = h >= remaining
            h_eff = torch.where(active, torch.minimum(h, remaining), torch.zeros_like(h))
            hb = h_eff[:, None]

            def scale_of(y_new, y_cur=y):
                return atol + rtol * torch.maximum(y_cur.abs(), y_new.abs())

            y_new, ks, err = self._trial(f, y, k1, hb, scale_of)
            k_new = ks[-1]
            finite = (
                torch.isfinite(y_new).all(-1) & torch.isfinite(err) & torch.isfinite(k_new).all(-1)
            )
            ok_domain = _inside(inside, y_new, y, finite)
            err = torch.where(finite & ok_domain, err, torch.full_like(err, float("inf")))
            accept = active & (err <= 1)
            reject = active & ~accept
            field = active & ~finite
            if bool(field.any()):
                stages = self._stage_points(y, ks, hb, y_new)
                field = _field_non_finite(inside, y, field, stages)[0]
            exit_ = reject & ~ok_domain & ~field
            domain_rejects = torch.where(accept, False, domain_rejects | exit_)
            n_non_finite += field.long()
            nf_until = torch.where(field, t + h_eff, nf_until)

            if ys is not None:  # output times inside accepted steps, from the dense output
                nxt = _record_dense(
                    lambda r, th, y=y, ks=ks, h=h_eff: self._dense(
                        f, y[r], [k[r] for k in ks], h[r], th
                    ),
                    ys,
                    t_targets[:M],
                    nxt,
                    t,
                    h_eff,
                    accept,
                )
            y = torch.where(accept[:, None], y_new, y)
            k1 = torch.where(accept[:, None], k_new, k1)
            t = torch.where(accept, t + h_eff, t)
            n_steps += accept.long()
            n_rej += reject.long()

            factor = SAFETY * err.clamp_min(1e-30) ** self.ERROR_EXPONENT
            factor = factor.clamp(MIN_FACTOR, MAX_FACTOR)
            cap = torch.full_like(factor, MAX_FACTOR_AFTER_REJECT)
            factor = torch.where(accept, factor, torch.minimum(factor, cap))
            h_new = h_eff * factor
            # After a step shortened to land on t_end, do not let the short step set the pace.
            h_new = torch.where(accept & clipped, torch.maximum(h_new, h), h_new)
            h = torch.where(active, h_new, h)
            nf_cap = torch.where(field, h_new, nf_cap)
            held = t < nf_until
            h = torch.where(held, torch.minimum(h, nf_cap), h)
            n_non_finite = torch.where(held, n_non_finite, 0)

            done = active & (t >= t_end * (1 - 4 * eps))
            status = torch.where(done, SUCCESS, status)
            stop = (status == RUNNING) & (n_non_finite >= NON_FINITE_REJECTS)
            status = torch.where(stop, NON_FINITE, status)
            under = (status == RUNNING) & (h < min_h)
            status = torch.where(under & domain_rejects, LEFT_DOMAIN, status)
            status = torch.where(under & ~domain_rejects, UNDERFLOW, status)
        status = torch.where(status == RUNNING, MAX_STEPS, status)
        return ODEResult(y=y, ys=ys, t=t, status=status, n_steps=n_steps, n_rejected=n_rej)


@dataclass(frozen=True)
class Dopri5(_EmbeddedRK):
    """Adaptive Dormand–Prince RK5(4) with per-trajectory step control.

    Args:
        rtol, atol: tolerances of the local error test, positive; ``None`` picks them from the
            dtype (1e-10 / 1e-10 in float64, 1e-5 / 1e-6 in float32). A step is accepted when
            ``rms(err / (atol + rtol · max(|y|, |y_new|))) ≤ 1``.
        max_steps: cap on accepted plus rejected steps per trajectory.
    """

    # -- the scheme -----------------------------------------------------------------------
    @staticmethod
    def stages(f: Callable, y: torch.Tensor, k1: torch.Tensor, h: torch.Tensor) -> list:
        """The six stage derivatives of one Dormand–Prince step; ``h`` is ``(B, 1)``."""
        ks = [k1]
        for row in _A[1:]:
            ks.append(f(y + h * _combine(row, ks)))
        return ks

    @staticmethod
    def step5(y: torch.Tensor, ks: list, h: torch.Tensor) -> torch.Tensor:
        """The fifth-order update from the stages."""
        return y + h * _combine(_B5, ks)

    def fixed_steps(
        self, f: Callable, y0: torch.Tensor, t_end: float | torch.Tensor, steps: int
    ) -> torch.Tensor:
        """``steps`` equal steps of the 5th-order scheme, no error control.

        No data-dependent branching, so it is traceable by ``torch.func``. ``y0`` is
        ``(..., d)``; ``t_end`` a float or a tensor broadcastable to ``(..., 1)``. Global error
        O(h⁵).
        """
        h = torch.as_tensor(t_end, dtype=y0.dtype, device=y0.device) / steps
        y = y0
        for _ in range(steps):
            y = self.step5(y, self.stages(f, y, f(y), h), h)
        return y

    def _trial(self, f, y, k1, h, scale_of):
        ks = self.stages(f, y, k1, h)
        y_new = self.step5(y, ks, h)
        ks = ks + [f(y_new)]
        return y_new, ks, _rms(h * _combine(_E, ks) / scale_of(y_new))

    def _dense(self, f, y, ks, h, theta):
        return dense_output(y, ks, h, theta)

    def _stage_points(self, y, ks, h, y_new):
        return _stage_points(_A[1:], y, ks, h, y_new)


@dataclass(frozen=True)
class Dop853(_EmbeddedRK):
    """Adaptive Dormand–Prince 8(5,3) with per-trajectory step control.

    Twelve stages per step, eighth order, error estimated by the pair's combined fifth- and
    third-order estimators ``err = |h|·|e₅|² / sqrt((|e₅|² + 0.01·|e₃|²)·d)`` (each scaled by
    ``atol + rtol · max(|y|, |y_new|)``), controller ``h ← h · clip(0.9 · err^{-1/8}, 0.2, 5)``;
    seventh-order dense output (three extra stages, only for steps containing output times).
    At tight tolerances it takes far fewer steps than `Dopri5` (measured on Fubini–Study and
    ball geodesics with their variational equations at rtol = atol = 1e-10: about 3× fewer
    right-hand-side evaluations, 6× fewer steps), which is what the boundary-value solvers'
    Newton shooting pays for. Same options, outcomes and tolerances as `Dopri5`.

    Args:
        rtol, atol: tolerances of the local error test, positive; ``None`` picks them from the
            dtype (1e-10 / 1e-10 in float64, 1e-5 / 1e-6 in float32).
        max_steps: cap on accepted plus rejected steps per trajectory.
    """

    ERROR_EXPONENT = -1 / 8

    @staticmethod
    def stages(f: Callable, y: torch.Tensor, k1: torch.Tensor, h: torch.Tensor) -> list:
        """The twelve stage derivatives of one step; ``h`` is ``(B, 1)``."""
        ks = [k1]
        for row in _A8[1:12]:
            ks.append(f(y + h * _combine(row, ks)))
        return ks

    def _trial(self, f, y, k1, h, scale_of):
        ks = self.stages(f, y, k1, h)
        y_new = y + h * _combine(_B8, ks)
        ks = ks + [f(y_new)]
        scale = scale_of(y_new)
        n5 = (_combine(_E8_5, ks) / scale).square().sum(-1)
        n3 = (_combine(_E8_3, ks) / scale).square().sum(-1)
        den = (n5 + 0.01 * n3) * y.shape[-1]
        err = h[:, 0].abs() * n5 / den.clamp_min(torch.finfo(y.dtype).tiny).sqrt()
        return y_new, ks, torch.where(den > 0, err, torch.zeros_like(err))

    def _dense(self, f, y, ks, h, theta):
        hb = h[:, None]
        K = list(ks)
        for row in _A8[13:16]:
            K.append(f(y + hb * _combine(row, K)))
        dy = hb * _combine(_B8, ks)
        F = [dy, hb * ks[0] - dy, 2 * dy - hb * (ks[-1] + ks[0])]
        F += [hb * _combine(row, K) for row in _D8]
        x = theta[..., None]  # (R, M, 1)
        out = F[6][:, None, :] * x
        for i, Fi in enumerate(reversed(F[:6])):
            out = (out + Fi[:, None, :]) * ((1 - x) if i % 2 == 0 else x)
        return y[:, None, :] + out

    def _stage_points(self, y, ks, h, y_new):
        return _stage_points(_A8[1:12], y, ks, h, y_new)


def _combine(coefficients, ks):
    """Σ c_k k_k over the non-zero coefficients (``ks`` may be longer than needed)."""
    return sum(c * k for c, k in zip(coefficients, ks, strict=False) if c != 0.0)


@dataclass(frozen=True)
class RK4(Integrator):
    """The classical fixed-step fourth-order Runge–Kutta scheme (global error O(h⁴)).

    Takes ``steps`` equal steps over ``[0, t_end]`` (more where output times ``t_eval`` fall
    between them: each interval between consecutive output times gets its share of steps). A
    trajectory fails with ``"left_domain"`` at the first state (or, where the new state is not
    finite, stage point) outside ``inside``, with ``"non_finite"`` at the first step whose
    right-hand side is not finite at a stage point inside the domain, and with
    ``"step_underflow"`` at any other non-finite state (overflow; the step is not adapted).

    Args:
        steps: equal steps over ``[0, t_end]``.
    """

    steps: int = 64

    def __post_init__(self):
        check_positive_int(self.steps, "steps")

    @staticmethod
    def step(f: Callable, y: torch.Tensor, h) -> torch.Tensor:
        """One classical RK4 step of size ``h``."""
        return RK4._step_stages(f, y, h)[0]

    @staticmethod
    def _step_stages(f: Callable, y: torch.Tensor, h):
        """`step`, and the ``(point, derivative)`` pairs of its four stages."""
        k1 = f(y)
        y2 = y + 0.5 * h * k1
        k2 = f(y2)
        y3 = y + 0.5 * h * k2
        k3 = f(y3)
        y4 = y + h * k3
        k4 = f(y4)
        y_new = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        return y_new, [(y, k1), (y2, k2), (y3, k3), (y4, k4)]

    def integrate(self, f, y0, t_end=1.0, *, inside=None, t_eval=None) -> ODEResult:
        B, d = y0.shape
        dtype, device = y0.dtype, y0.device
        t_end = float(t_end)
        y = y0.clone()
        status = torch.zeros(B, dtype=torch.long, device=device)
        n_steps = torch.zeros(B, dtype=torch.long, device=device)
        t = torch.zeros(B, dtype=dtype, device=device)
        ys, t_targets, nxt, M = _output_buffer(y, t_eval, t_end)
        knots = [0.0] + [float(s) for s in t_targets.tolist() if s > 0] if ys is not None else []
        if ys is None:
            knots = [0.0, t_end]
        for a, b in zip(knots[:-1], knots[1:], strict=True):
            if b <= a:
                continue
            k = max(1, math.ceil(self.steps * (b - a) / t_end))
            h = (b - a) / k
            for _ in range(k):
                active = status == RUNNING
                if not bool(active.any()):
                    break
                y_new, stages = self._step_stages(f, y, h)
                finite = torch.isfinite(y_new).all(-1)
                ok = _inside(inside, y_new, y, finite)
                field = exit_ = active & ~finite
                if bool(field.any()):
                    field, exit_ = _field_non_finite(inside, y, field, stages)
                status = torch.where(field, NON_FINITE, status)
                status = torch.where(active & ~finite & ~field, UNDERFLOW, status)
                status = torch.where((active & finite & ~ok) | exit_, LEFT_DOMAIN, status)
                moved = active & finite & ok
                y = torch.where(moved[:, None], y_new, y)
                t = torch.where(moved, t + h, t)
                n_steps += moved.long()
            if ys is not None:
                nxt = _record(ys, y, status == RUNNING, nxt, M)
        status = torch.where(status == RUNNING, SUCCESS, status)
        return ODEResult(
            y=y, ys=ys, t=t, status=status, n_steps=n_steps, n_rejected=torch.zeros_like(n_steps)
        )


def _inside(inside, y_new, y, finite):
    if inside is None:
        return finite
    return torch.as_tensor(inside(torch.where(finite[:, None], y_new, y)), device=y.device) & finite


def _field_non_finite(inside, y, rows, stages) -> tuple[torch.Tensor, torch.Tensor]:
    """Why the ``rows`` (bool ``(B,)``) of a step went non-finite: ``(field, exit)``.

    ``field``: the right-hand side is not finite at a stage point inside the domain, and no
    finite stage point lies outside it; ``exit``: some finite stage point lies outside the
    domain. ``stages`` holds the ``(point, derivative)`` pairs of the step.
    """
    hit = torch.zeros_like(rows)
    out = torch.zeros_like(rows)
    for point, k in stages:
        finite = torch.isfinite(point).all(-1)
        ok = _inside(inside, point, y, finite)
        out = out | (finite & ~ok)
        hit = hit | (ok & ~torch.isfinite(k).all(-1))
    return rows & hit & ~out, rows & out


def _stage_points(rows, y, ks, h, y_new):
    """``(point, derivative)`` of the stages after the first of an embedded RK step with the
    tableau ``rows`` (stage 1 is at the accepted state, its derivative known finite; the last
    stage is at the trial state ``y_new``)."""
    points = [y + h * _combine(row, ks) for row in rows]
    return list(zip(points + [y_new], ks[1:], strict=True))


def _stop_non_finite_start(status, inside, y0, k0):
    """Stop rows whose right-hand side is not finite at the initial state: ``"non_finite"``
    inside the domain, ``"left_domain"`` outside it."""
    bad = ~torch.isfinite(k0).all(-1)
    if not bool(bad.any()):
        return status
    ok = _inside(inside, y0, y0, torch.isfinite(y0).all(-1))
    return torch.where(bad, torch.where(ok, NON_FINITE, LEFT_DOMAIN), status)


def _output_buffer(y, t_eval, t_end):
    """``(ys, targets, next index, M)`` for output times ``t_eval`` (or Nones)."""
    if t_eval is None:
        return None, None, None, 0
    B, d = y.shape
    t_eval = torch.as_tensor(t_eval, dtype=y.dtype, device=y.device)
    M = t_eval.shape[0]
    ys = torch.full((B, M, d), float("nan"), dtype=y.dtype, device=y.device)
    nxt = torch.zeros(B, dtype=torch.long, device=y.device)
    at0 = t_eval <= 0
    ys[:, at0] = y[:, None, :]
    nxt += int(at0.sum())
    targets = torch.cat([t_eval, t_eval.new_full((1,), t_end)])
    return ys, targets, nxt, M


def dense_output(y: torch.Tensor, ks: list, h: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    r"""Dormand–Prince dense output inside one step: states at ``t + θh``.

    ``y`` ``(R, d)`` is the state at the start of the step, ``ks`` the seven stage derivatives
    ``(R, d)`` each (the seventh at the step's new state), ``h`` ``(R,)`` the step and ``theta``
    ``(R, M)`` in [0, 1]; returns ``(R, M, d)``. Fourth-order accurate (local error O(h⁵)),
    exact at θ = 0 and equal to the fifth-order step at θ = 1.
    """
    P = torch.tensor(_P_DENSE, dtype=y.dtype, device=y.device)  # (7, 4)
    Q = h[:, None, None] * torch.einsum("rkd,kj->rjd", torch.stack(ks, 1), P)  # (R, 4, d)
    powers = torch.stack([theta, theta**2, theta**3, theta**4], -1)  # (R, M, 4)
    return y[:, None, :] + torch.einsum("rmj,rjd->rmd", powers, Q)


def _record_dense(dense, ys, times, nxt, t, h, accepted):
    """Store, for every ``accepted`` row, its output times in ``(t, t + h]`` from the dense
    output ``dense(rows, theta)`` of the step just taken; returns the next-output indices."""
    M = times.shape[0]
    t1 = t + h
    slack = 4 * torch.finfo(t.dtype).eps * t1.abs().clamp_min(1)
    due = accepted & (nxt < M) & (times[nxt.clamp(max=M - 1)] <= t1 + slack)
    if not bool(due.any()):
        return nxt
    idx = due.nonzero().squeeze(-1)
    window = (torch.arange(M, device=ys.device)[None, :] >= nxt[idx, None]) & (
        times[None, :] <= t1[idx, None] + slack[idx, None]
    )
    theta = ((times[None, :] - t[idx, None]) / h[idx, None]).clamp(0, 1)
    ys[idx] = torch.where(window[..., None], dense(idx, theta), ys[idx])
    return nxt.index_add(0, idx, window.sum(-1))


def _record(ys, y, landed, nxt, M):
    """Store the states of rows that just landed on their next output time."""
    landed = landed & (nxt < M)
    if bool(landed.any()):
        idx = landed.nonzero().squeeze(-1)
        ys[idx, nxt[idx]] = y[idx]
    return nxt + landed.long()
