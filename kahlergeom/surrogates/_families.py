r"""Families of Kähler surrogates that `fit_kahler` can fit: the extension point.

A family turns a dictionary of real tensors (its parameters) into a Levi matrix at points,
differentiably, and into a `KahlerPotential` with a closed-form ``levi`` once fitted. Every
family must be PSD **by construction** with a strictly positive floor, whatever the parameter
values (the optimiser never has to respect a constraint).

* `RidgeFamily` (the default): $K = \sum_k a_k\,\mathrm{softplus}(w_k\cdot u + b_k)
  + (z-z_0)^\top M\,\overline{(z-z_0)}$, a `kahlergeom.potentials.RidgePotential`.
* `LSEFamily`: the paper's log-sum-exp of complex-Gaussian components
  (`kahlergeom.potentials.GaussianMixturePotential`) with learned means, precisions,
  log-weights and temperature.

To add a family, subclass `SurrogateFamily` (a frozen dataclass of options), set ``name`` and
implement `init`, `levi` and `potential`; see docs/extending.md.
"""

from __future__ import annotations

import abc
import math
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch

from kahlergeom.potentials._base import KahlerPotential
from kahlergeom.potentials._mixture import GaussianMixturePotential
from kahlergeom.potentials._ridge import RidgePotential, ridge_levi, ridge_levi_flat, ridge_outer
from kahlergeom.surrogates._reduce import reduce_components

#: name → family class, filled by `SurrogateFamily.__init_subclass__` (used by `load`).
FAMILIES: dict[str, type[SurrogateFamily]] = {}


def _inv_softplus(x: torch.Tensor) -> torch.Tensor:
    return x + torch.log(-torch.expm1(-x))


def _hermitian_factor(params: dict, key: str, n: int) -> torch.Tensor:
    """Complex L from the real parameters ``key_re``, ``key_im`` of shape (..., n, n)."""
    return torch.complex(params[key + "_re"], params[key + "_im"])


class SurrogateFamily(abc.ABC):
    """A parameterised family of Kähler potentials with a closed-form, PSD Levi matrix.

    Subclasses are frozen dataclasses whose fields are the family's options (JSON-like values,
    saved in `KahlerFit.state_dict`), with a unique class attribute ``name``. Implement:

    * ``init(points, metrics, generator)`` → ``(trainable, buffers)``: two dicts of real
      tensors; the first is optimised, the second is fixed (e.g. a centre, a floor).
    * ``levi(params, points)``: ``params`` is both dicts merged; ``points`` complex
      ``(B, n)`` → Levi matrices ``(B, n, n)``, differentiable in ``params``, PSD with a
      strictly positive floor for *every* parameter value.
    * ``potential(params)`` → a `KahlerPotential` whose ``levi`` equals `levi` (closed form).
    """

    name: ClassVar[str] = ""
    #: Adam learning rate used when `fit_kahler` is not given one.
    default_lr: ClassVar[float] = 1e-2

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name:
            FAMILIES[cls.name] = cls

    @abc.abstractmethod
    def init(
        self, points: torch.Tensor, metrics: torch.Tensor, generator: torch.Generator
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Initial trainable parameters and fixed buffers from the training data."""

    @abc.abstractmethod
    def levi(self, params: dict[str, torch.Tensor], points: torch.Tensor) -> torch.Tensor:
        """Levi matrices ``(B, n, n)`` at complex ``points`` ``(B, n)`` (differentiable)."""

    @abc.abstractmethod
    def potential(self, params: dict[str, torch.Tensor]) -> KahlerPotential:
        """The fitted `KahlerPotential` (detached parameters, closed-form ``levi``)."""

    def levi_flat(self, params: dict[str, torch.Tensor], points: torch.Tensor) -> torch.Tensor:
        """The Levi matrices as real rows ``(B, 2n²)``: (Re G, Im G), each flattened row-major.

        The fitting loop works on this form (real arithmetic is cheaper to differentiate);
        the default builds it from `levi`. Override it for speed.
        """
        G = self.levi(params, points)
        return torch.cat([G.real.flatten(-2), G.imag.flatten(-2)], -1)

    def options(self) -> dict:
        """The family's options (its dataclass fields), as saved in a state dict."""
        return asdict(self)  # type: ignore[call-overload]


def _floor_value(metrics: torch.Tensor, floor: float) -> float:
    n = metrics.shape[-1]
    mean_trace = float(torch.diagonal(metrics, 0, -2, -1).real.sum(-1).mean()) / n
    return floor * max(mean_trace, torch.finfo(metrics.real.dtype).tiny)


def _check_option(value, name, *, integer=False, minimum=0.0, strict=True):
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    ok = ok and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > minimum if strict else value >= minimum)
    if not ok:
        kind = "an integer" if integer else "a finite number"
        rel = ">" if strict else ">="
        raise ValueError(f"{name} must be {kind} {rel} {minimum}; got {value!r}.")


@dataclass(frozen=True)
class RidgeFamily(SurrogateFamily):
    r"""Ridge PSH potentials (`kahlergeom.potentials.RidgePotential`), the default family.

    $G(z) = M + \tfrac14\sum_{k=1}^H a_k\,\sigma(s_k)(1-\sigma(s_k))\,\bar c_k c_k^\top$ with
    $s_k = w_k\cdot u + b_k$, $u$ the real coordinates of $z - z_0$ and $c_k = w_{k,x} + i w_{k,y}$.
    Parameterised so that every value is admissible: $a_k = \mathrm{softplus}(\rho_k) \ge 0$ and
    $M = L L^H + \varepsilon I$ with $\varepsilon$ = ``floor`` × (mean trace of the training
    metrics)/n > 0, so $G \succeq \varepsilon I$ everywhere.

    Initialisation (seeded): $z_0$ = mean of the training points (centred, **not** standardised:
    standardising stalls the fit in partly collapsed latents); $w_k \sim \mathcal N(0, I)\cdot$
    ``init_sharpness`` / (RMS coordinate spread · √(2n)); each ridge passes through a random
    training point ($b_k = -w_k\cdot u_{i_k}$); $M$ and the $a_k$ each carry half of the mean
    training metric.

    Args:
        n_ridges: H, the number of ridges.
        floor: relative floor ε of the metric (> 0).
        init_sharpness: typical |s_k| spread over the data at initialisation.
    """

    name: ClassVar[str] = "ridge"
    default_lr: ClassVar[float] = 2e-2
    n_ridges: int = 256
    floor: float = 1e-4
    init_sharpness: float = 2.0

    def __post_init__(self):
        _check_option(self.n_ridges, "n_ridges", integer=True, minimum=0)
        _check_option(self.floor, "floor")
        _check_option(self.init_sharpness, "init_sharpness")

    def init(self, points, metrics, generator):
        real = points.real.dtype
        n = points.shape[-1]
        H = self.n_ridges
        z0 = points.mean(0)
        d = points - z0
        u = torch.cat([d.real, d.imag], -1)
        spread = float(u.square().mean().sqrt().clamp_min(1e-12))
        W = torch.randn(H, 2 * n, generator=generator, dtype=real)
        W = W * (self.init_sharpness / (spread * math.sqrt(2 * n)))
        idx = torch.randint(points.shape[0], (H,), generator=generator)
        b = -(W * u[idx]).sum(-1)
        eps = _floor_value(metrics, self.floor)
        mean_G = metrics.mean(0)
        mean_G = 0.5 * (mean_G + mean_G.mH)
        target = 0.5 * mean_G - eps * torch.eye(n, dtype=mean_G.dtype)
        evals, evecs = torch.linalg.eigh(target)
        L = evecs * evals.clamp_min(eps).sqrt().unsqueeze(-2)  # L L^H ≈ target, PSD
        # Amplitudes: the ridges carry the other half of the mean trace at the training points.
        unit = ridge_levi(u, W, b, torch.ones(H, dtype=real), torch.zeros(n, n, dtype=points.dtype))
        t_unit = float(torch.diagonal(unit, 0, -2, -1).real.sum(-1).mean())
        t_goal = 0.5 * float(torch.diagonal(mean_G, 0, -2, -1).real.sum())
        a0 = max(t_goal / max(t_unit, 1e-300), 1e-8)
        rho = _inv_softplus(torch.full((H,), a0, dtype=real))
        trainable = {"W": W, "b": b, "rho": rho, "L_re": L.real.clone(), "L_im": L.imag.clone()}
        buffers = {
            "centre": torch.cat([z0.real, z0.imag]),
            "eps": torch.tensor(eps, dtype=real),
        }
        return trainable, buffers

    @staticmethod
    def _base(params, n):
        L = _hermitian_factor(params, "L", n)
        eye = torch.eye(n, dtype=L.dtype, device=L.device)
        return L @ L.mH + params["eps"] * eye

    def levi(self, params, points):
        n = points.shape[-1]
        g = self.levi_flat(params, points)
        return torch.complex(g[:, : n * n], g[:, n * n :]).reshape(-1, n, n)

    def levi_flat(self, params, points):
        n = points.shape[-1]
        u = torch.cat([points.real, points.imag], -1) - params["centre"]
        a = torch.nn.functional.softplus(params["rho"])
        W = params["W"]
        g = ridge_levi_flat(u, W, params["b"], a, torch.cat(ridge_outer(W), -1))
        # M = L Lᴴ + ε I in real arithmetic: Re = Lr Lrᵀ + Li Liᵀ + ε I, Im = Li Lrᵀ − Lr Liᵀ.
        Lr, Li = params["L_re"], params["L_im"]
        eye = torch.eye(n, dtype=Lr.dtype, device=Lr.device)
        m_re = Lr @ Lr.T + Li @ Li.T + params["eps"] * eye
        m_im = Li @ Lr.T - Lr @ Li.T
        return g + torch.cat([m_re.flatten(), m_im.flatten()])

    def potential(self, params):
        p = {k: v.detach() for k, v in params.items()}
        n = p["W"].shape[-1] // 2
        c = p["centre"]
        return RidgePotential(
            p["W"],
            p["b"],
            torch.nn.functional.softplus(p["rho"]),
            self._base(p, n),
            torch.complex(c[:n], c[n:]),
        )


@dataclass(frozen=True)
class LSEFamily(SurrogateFamily):
    r"""The paper's log-sum-exp surrogate with **learned** ingredients.

    $\Psi = \tau\log\sum_j \exp\big((z-m_j)^H P_j (z-m_j) + \log w_j\big)/\tau$, a
    `kahlergeom.potentials.GaussianMixturePotential`, with means $m_j$, precisions
    $P_j = L_j L_j^H + \varepsilon I$, log-weights and $\log\tau$ all optimised. Its Levi matrix
    $\sum_j\pi_j P_j^\top + \mathrm{Cov}/\tau \succeq \varepsilon I$. The temperature enters
    differentiably through
    $\mathrm{Levi}_\tau(P, \log w) = \tau\,\mathrm{Levi}_1(P/\tau, \log w/\tau)$.

    Initialisation: k-means centres of the training points (seeded), $P_j$ = the mean of
    $G^\top$ over the cluster, equal weights, $\tau$ = ``temperature``. Start at τ ≈ 10–100:
    from a tuned small τ the fit does not move, from τ = 1 it was seen to diverge.

    Args:
        n_components: m.
        temperature: initial τ.
        learn_temperature: optimise τ too.
        floor: relative floor ε (> 0), as in `RidgeFamily`.
    """

    name: ClassVar[str] = "lse"
    default_lr: ClassVar[float] = 1e-2
    n_components: int = 64
    temperature: float = 30.0
    learn_temperature: bool = True
    floor: float = 1e-4

    def __post_init__(self):
        _check_option(self.n_components, "n_components", integer=True, minimum=0)
        _check_option(self.temperature, "temperature")
        _check_option(self.floor, "floor")
        if not isinstance(self.learn_temperature, bool):
            raise ValueError(f"learn_temperature must be a bool; got {self.learn_temperature!r}.")

    def init(self, points, metrics, generator):
        real = points.real.dtype
        N, n = points.shape
        m = min(self.n_components, N)
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
        red = reduce_components(points, m, seed=seed)
        eps = _floor_value(metrics, self.floor)
        GT = metrics.transpose(-1, -2)
        counts = torch.bincount(red.labels, minlength=m).clamp_min(1).to(real)
        P = torch.zeros(m, n, n, dtype=points.dtype).index_add_(0, red.labels, GT)
        P = P / counts[:, None, None]
        # Empty clusters (none after Lloyd, but be safe) fall back to the overall mean.
        P = torch.where((counts > 0)[:, None, None], P, GT.mean(0))
        P = 0.5 * (P + P.mH)
        evals, evecs = torch.linalg.eigh(P - eps * torch.eye(n, dtype=P.dtype))
        L = evecs * evals.clamp_min(eps).sqrt().unsqueeze(-2)
        trainable = {
            "means_re": red.centres.real.clone(),
            "means_im": red.centres.imag.clone(),
            "L_re": L.real.clone(),
            "L_im": L.imag.clone(),
            "logw": torch.zeros(m, dtype=real),
        }
        log_tau = torch.tensor(math.log(self.temperature), dtype=real)
        buffers = {"eps": torch.tensor(eps, dtype=real)}
        if self.learn_temperature:
            trainable["log_tau"] = log_tau
        else:
            buffers["log_tau"] = log_tau
        return trainable, buffers

    @staticmethod
    def _parts(params):
        means = torch.complex(params["means_re"], params["means_im"])
        L = torch.complex(params["L_re"], params["L_im"])
        n = means.shape[-1]
        P = L @ L.mH + params["eps"] * torch.eye(n, dtype=L.dtype, device=L.device)
        return means, P, params["logw"], params["log_tau"]

    def levi(self, params, points):
        means, P, logw, log_tau = self._parts(params)
        tau = torch.exp(log_tau)
        logw = logw - logw.max().detach()  # the softmax is shift invariant; avoid overflow
        unit = GaussianMixturePotential(
            means.to(points.dtype), P.to(points.dtype) / tau, torch.exp(logw / tau), 1.0
        )
        return tau * unit.levi(points)

    def potential(self, params):
        p = {k: v.detach() for k, v in params.items()}
        means, P, logw, log_tau = self._parts(p)
        logw = logw - logw.max()
        return GaussianMixturePotential(
            means, P, torch.exp(logw), temperature=float(torch.exp(log_tau))
        )
