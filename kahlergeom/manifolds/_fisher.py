r"""The Fisher (pullback) metric of a decoder with a complex latent."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.func import jvp, vmap

from kahlergeom._checks import check_points
from kahlergeom._linalg import from_real, levi_from_real_hessian, to_real, wirtinger
from kahlergeom.decoders._decoders import check_decoder, decode_params, evaluate_decoder
from kahlergeom.decoders._likelihoods import ComplexGaussian, Likelihood
from kahlergeom.geodesics import DiscreteEnergy
from kahlergeom.manifolds._hermitian import HermitianManifold

#: With no ``chunk_size``, on the CPU the points go through the decoder in blocks whose output
#: tangents (k directions × points × decoder outputs; k = 2n for the metric) take about this
#: many bytes, so that the memory-bound passes over them (activation derivatives, bias terms,
#: complex assembly, the Fisher contraction) run in cache rather than from main memory.
#: Measured with ``benchmarks/bench_decoder_metric.py --peers-only`` (docs/decoder-geometry.md):
#: the issue's tanh MLP (float32, N = 1024) 1.68× → 1.10–1.14× stochman's time, the
#: one-hidden-layer decoder (float64) about 2.5× faster than one block.
CPU_BLOCK_BYTES = 6 << 20
#: Fewest points per automatic block: below this the per-call cost of the transforms dominates.
MIN_BLOCK_POINTS = 16


def _infer_latent_dim(decoder) -> int | None:
    for attr in ("n", "latent_dim"):
        value = getattr(decoder, attr, None)
        if isinstance(value, int) and value >= 1:
            return value
    return None


def _gram(a: torch.Tensor) -> torch.Tensor:
    """Σ_k a[i, b, k] a[j, b, k] for real ``a`` (m, B, K): ``(B, m, m)``, one batched GEMM on
    strided views (no transposed copy of ``a``)."""
    return torch.bmm(a.transpose(0, 1), a.permute(1, 2, 0))


def _complex_gaussian_fisher(params, dparams, B: int) -> torch.Tensor:
    r"""Real Fisher ``(B, m, m)`` of the circular complex Gaussian from batched JVPs.

    $F_{ij} = \sum_d \tfrac{2}{\sigma_d^2}\mathrm{Re}(\overline{\partial_i\mu_d}\,\partial_j\mu_d)
    + \partial_i\sigma_d^2\,\partial_j\sigma_d^2/\sigma_d^4$ (as `ComplexGaussian.fisher_real`),
    with ``dmean`` ``(m, B, D)`` complex: Re(conj(a) b) summed over d is a real dot product of
    the (Re, Im) pairs, so the whole contraction is one batched GEMM. A variance without a batch
    axis (a scalar or per-output constant) does not depend on z: its term vanishes, and a scalar
    one scales the Gram matrix instead of the Jacobian.
    """
    mean, var = params
    dmean, dvar = dparams
    m = dmean.shape[0]
    batched_var = var.ndim == mean.ndim
    if batched_var:
        var = var.expand(B, *mean.shape[1:])
    if var.ndim == 0:
        parts = torch.view_as_real(dmean).flatten(-2)  # (m, B, 2D), a view
        return (2.0 / var) * _gram(parts)
    scale = torch.sqrt(2.0 / var).to(dmean.real.dtype)
    parts = torch.view_as_real(dmean * scale).flatten(-2)
    F = _gram(parts)
    if batched_var:
        dvar = dvar.expand(m, *var.shape)
        F = F + _gram((dvar / var).flatten(2))
    return F


class FisherManifold(HermitianManifold):
    r"""Latent space with the Fisher information metric of a decoder.

    $$g_{a\bar b}(z) = \mathbb E_{x\sim p(\cdot|z)}\big[\partial_a \log p(x|z)\;
      \bar\partial_b \log p(x|z)\big],$$

    for the default circular complex Gaussian (`ComplexGaussian`):
    $G[a,b] = (\partial_b\mu)^H\Sigma^{-1}(\partial_a\mu)
      + (\bar\partial_a\mu)^H\Sigma^{-1}(\bar\partial_b\mu)
      + \mathrm{tr}(\Sigma^{-1}\partial_a\Sigma\,\Sigma^{-1}\bar\partial_b\Sigma)$.

    Computed exactly with forward-mode Jacobian–vector products of the decoder along the 2n
    real latent directions (``torch.func.jvp``, vmapped over directions and points, optionally
    chunked with ``chunk_size`` points at a time), then the likelihood's real Fisher matrix and
    the Wirtinger combination $G = \tfrac14[(F_{xx}+F_{yy}) + i(F_{xy}-F_{xy}^\top)]$.

    The field is Hermitian but, in general, **not Kähler** (the metric is assembled point by
    point): `closedness_residual` measures it and geodesics use the Levi-Civita connection of
    the real metric. For a holomorphic mean with constant variance it is Kähler with potential
    $\mu^H\Sigma^{-1}\mu$; pass ``assume_kahler=True`` only when you know that.

    Args:
        decoder: ``decoder(z)`` for complex ``z`` ``(..., n)`` returning the likelihood's
            parameters (``(mean, variance)`` for the Gaussian likelihoods). An ``nn.Module``
            with batch norm or dropout must be in eval mode.
        likelihood: a `kahlergeom.decoders.Likelihood` (default `ComplexGaussian()`).
        n: latent dimension (default: ``decoder.n`` or ``decoder.latent_dim``, else taken from
            the first points seen).
        chunk_size: evaluate at most this many points at once. Default: on the CPU, blocks
            sized so that their output tangents take about `CPU_BLOCK_BYTES` (cache-sized;
            faster than one block), on other devices all points at once.
        assume_kahler: declare the field Kähler (enables the Kähler connection). For n = 1
            the field is always Kähler and this is implied.
    """

    def __init__(
        self,
        decoder: Callable,
        likelihood: Likelihood | None = None,
        *,
        n: int | None = None,
        chunk_size: int | None = None,
        assume_kahler: bool = False,
    ):
        self.decoder = check_decoder(decoder)
        if likelihood is None:
            likelihood = ComplexGaussian()
        if not isinstance(likelihood, Likelihood):
            raise ValueError(
                f"likelihood must be a kahlergeom.decoders.Likelihood; got {likelihood!r}."
            )
        self.likelihood = likelihood
        n = n if n is not None else _infer_latent_dim(decoder)
        super().__init__(n if n is not None else 1, chunk_size=chunk_size)
        if n is None:
            self.n = None  # taken from the first points seen (check_point)
        self._assume_kahler = bool(assume_kahler)
        self._decoder_checked = False  # its outputs, once, on the first successful call
        self._point_bytes: dict[torch.dtype, int] = {}  # output bytes per point, per dtype

    @property
    def is_kahler(self) -> bool:  # type: ignore[override]
        """Declared Kähler (``assume_kahler``), or n = 1: in one complex dimension every
        Hermitian metric is Kähler (dω is a 3-form on a real surface)."""
        return self._assume_kahler or self.n == 1

    def check_point(self, z, name: str = "z") -> torch.Tensor:
        """Validate points; on the first call also the decoder's outputs (at one point).

        The decoder is run here only until one call has succeeded: that call fixes ``n`` (when
        it was not given) and proves the decoder returns the likelihood's parameters. A failing
        first call changes nothing. The cheap mode check (no batch norm or dropout in training
        mode) runs every time, since a module can be switched back to training mode.
        """
        check_points(z, self.n, name)
        check_decoder(self.decoder)
        if not self._decoder_checked:
            evaluate_decoder(self.decoder, self.likelihood, z.reshape(-1, z.shape[-1])[:1])
            self.n = z.shape[-1]
            self._decoder_checked = True
        return z

    def metric(self, z: torch.Tensor) -> torch.Tensor:
        r"""Metric matrix $G[\ldots, a, b] = g_{a\bar b}(z)$, ``(..., n)`` → ``(..., n, n)``.

        Raises ``ValueError`` naming the first point where the decoder's outputs (hence G) are
        not finite, rather than returning NaN silently.
        """
        G = self.metric_field(self.check_point(z))
        finite = torch.isfinite(torch.view_as_real(G)).flatten(-3).all(-1)
        if not bool(finite.all()):
            bad = (~finite).nonzero()
            raise ValueError(
                f"z: the decoder's outputs are not finite (or not differentiable) at "
                f"{bad.shape[0]} point(s), first at batch index {tuple(bad[0].tolist())}; "
                "the Fisher metric is undefined there."
            )
        return G

    def _params_of_real(self, u: torch.Tensor):
        return decode_params(self.decoder, self.likelihood, from_real(u))

    def real_fisher(self, z: torch.Tensor) -> torch.Tensor:
        r"""The real Fisher matrix F in coordinates u = (x, y): ``(..., n)`` → ``(..., 2n, 2n)``.

        $F_{ij} = \mathbb E[\partial_{u_i}\ell\,\partial_{u_j}\ell]$. The Hermitian metric is
        its Wirtinger combination, so `real_metric` is $G_R = \tfrac14(F + J^\top F J)$ with J
        the complex structure: $G_R = F/2$ exactly when F is J-invariant.
        """
        self.check_point(z)
        return self._real_fisher(z)

    def _real_fisher(self, z: torch.Tensor) -> torch.Tensor:
        n = z.shape[-1]
        u = to_real(z.reshape(-1, n))
        if u.shape[0] == 0:
            return u.new_zeros(*z.shape[:-1], 2 * n, 2 * n)
        return self._fisher_in_blocks(u).reshape(*z.shape[:-1], 2 * n, 2 * n)

    def _fisher_in_blocks(self, u: torch.Tensor, tangents: torch.Tensor | None = None):
        """`_real_fisher_rows` over blocks of `_block_points` points, concatenated."""
        k = u.shape[-1] if tangents is None else tangents.shape[0]
        rows = self._block_points(u, k)
        if rows >= u.shape[0]:
            return self._real_fisher_rows(u, tangents)
        blocks = torch.split(u, rows)
        tblocks = [None] * len(blocks) if tangents is None else torch.split(tangents, rows, 1)
        return torch.cat(
            [self._real_fisher_rows(c, tc) for c, tc in zip(blocks, tblocks, strict=True)]
        )

    def _block_points(self, u: torch.Tensor, k: int) -> int:
        """Points per decoder call carrying ``k`` tangents each: ``chunk_size`` when given; else
        all points off the CPU and cache-sized blocks on it (`CPU_BLOCK_BYTES` of output
        tangents, at least `MIN_BLOCK_POINTS` points)."""
        if self.chunk_size is not None:
            return self.chunk_size
        if u.device.type != "cpu":
            return u.shape[0]
        per_point = self._point_bytes.get(u.dtype)
        if per_point is None:
            # One point through the decoder: the size of its outputs (shape only; a decoder's
            # output size per point does not change, so it is kept per dtype).
            params = self._params_of_real(u[:1])
            lead = params[0].ndim
            per_point = sum(p[:1].numel() * p.element_size() for p in params if p.ndim == lead)
            self._point_bytes[u.dtype] = per_point
        tangent_bytes = max(1, k * per_point)
        return max(MIN_BLOCK_POINTS, CPU_BLOCK_BYTES // tangent_bytes)

    def _real_fisher_rows(self, u: torch.Tensor, tangents: torch.Tensor | None = None):
        """Real Fisher matrices ``(B, 2n, 2n)`` at real rows ``u`` ``(B, 2n)``; with real
        ``tangents`` ``(k, B, 2n)``, the ``(B, k, k)`` Gram matrices of F on those directions.

        One batched decoder call carries all 2n real tangents at once: ``jvp`` with the primal
        batch ``u`` (evaluated once) and the tangents ``e_i`` broadcast over the batch, vmapped
        over the 2n directions, so each layer does one GEMM over (directions × points) rows.
        The likelihood's per-point Fisher contraction is then vmapped over points (a batched
        GEMM for the Gaussian likelihoods). Decoders must be batch-independent (eval mode).
        """
        B, m = u.shape
        if tangents is None:
            tangents = torch.eye(m, dtype=u.dtype, device=u.device).unsqueeze(1).expand(m, B, m)
        m = tangents.shape[0]
        # out_dims=0 for the primal too (then its first copy): it does not depend on the
        # tangent, but under an enclosing transform (e.g. vmap(hessian(energy)) of a geodesic
        # solver) vmap sees it as batched, and out_dims=None would be refused.
        params, dparams = vmap(lambda t: jvp(self._params_of_real, (u,), (t,)))(tangents)
        params = tuple(p[0] for p in params)
        if type(self.likelihood) is ComplexGaussian:
            return _complex_gaussian_fisher(params, dparams, B)
        lead = params[0].ndim
        p_in, d_in, fixed = [], [], []
        for p, dp in zip(params, dparams, strict=True):
            batched = p.ndim == lead
            if batched and p.shape[0] != B:  # a batch axis of one, broadcast over the points
                p = p.expand(B, *p.shape[1:])
                dp = dp.expand(m, B, *dp.shape[2:])
            p_in.append(0 if batched else None)
            d_in.append(1 if batched else None)
            fixed.append((p, dp))
        params = tuple(p for p, _ in fixed)
        dparams = tuple(dp for _, dp in fixed)
        return vmap(self.likelihood.fisher_real, in_dims=(tuple(p_in), tuple(d_in)))(
            params, dparams
        )

    def metric_field(self, z: torch.Tensor) -> torch.Tensor:
        return levi_from_real_hessian(self._real_fisher(z))

    # -- optional protocol hooks of kahlergeom.geodesics.DiscreteEnergy ----------------------
    @property
    def default_solver(self):
        """The boundary-value solver `dist`, `log`, `geodesic` and ``solve_log`` use when none is
        given: `kahlergeom.geodesics.DiscreteEnergy` (curve energy through the decoder's output
        distributions; minutes → about a second per pair against `EnergyMinimisation`, see
        ``docs/benchmarks.md``). It certifies lengths to 1e-4 relative on decoder manifolds
        (float64; pass ``solver=DiscreteEnergy(length_rtol=1e-6)`` for six digits, several
        times the cost on non-smooth decoders). Its ``log`` velocity is the discrete curve's
        tangent; pass ``solver=DiscreteEnergy(refine=Shooting())`` for a shooting-certified
        one."""
        return DiscreteEnergy()

    def squared_norm(self, z: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        r"""$h(v, v)$ at ``z`` for tangent vectors ``v`` (both ``(..., n)``), real ``(...)``,
        unchecked: two forward-mode products of the decoder (along v and iv) instead of the
        2n of `metric_field`: $h(v, v) = \tfrac14[F(v, v) + F(iv, iv)]$ (real Fisher F)."""
        n = z.shape[-1]
        z, v = torch.broadcast_tensors(z, v)
        u = to_real(z.reshape(-1, n))
        t = torch.stack([to_real(v.reshape(-1, n)), to_real(1j * v.reshape(-1, n))])
        if u.shape[0] == 0:
            return u.new_zeros(z.shape[:-1])
        F = self._fisher_in_blocks(u, t)
        return (0.25 * (F[:, 0, 0] + F[:, 1, 1])).reshape(z.shape[:-1])

    def decoder_params(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The likelihood's parameters at points ``z`` ``(B, n)`` (unchecked, traceable): the
        decoder's output distributions, for divergence-based curve energies."""
        return decode_params(self.decoder, self.likelihood, z)

    def decoder_kl(self, params0, params) -> torch.Tensor:
        """KL(p(·|params0) ‖ p(·|params)) per point, summed over outputs (the likelihood's)."""
        return self.likelihood.kl(params0, params)

    def holomorphy_residual(self, z: torch.Tensor) -> torch.Tensor:
        r"""How far the decoder mean is from holomorphic: $\|\bar\partial\mu\| / (\|\partial\mu\|
        + \|\bar\partial\mu\|)$ per point (Frobenius norms), real ``(...)``, in [0, 1].

        0 for a holomorphic mean, 1 for an antiholomorphic one. Requires a complex mean (first
        decoder parameter).
        """
        self.check_point(z)
        n = z.shape[-1]
        u = to_real(z.reshape(-1, n))

        def point(u1):
            basis = torch.eye(2 * n, dtype=u1.dtype, device=u1.device)
            return vmap(lambda t: jvp(lambda w: self._params_of_real(w)[0], (u1,), (t,))[1])(basis)

        dmean = vmap(point, chunk_size=self.chunk_size)(u)  # (B, 2n, D)
        if not dmean.is_complex():
            raise ValueError(
                "holomorphy_residual needs a decoder with a complex mean; this decoder's first "
                f"output is {dmean.dtype}."
            )
        d, dbar = wirtinger(dmean[:, :n], dmean[:, n:])
        nd = torch.linalg.vector_norm(d, dim=(-1, -2))
        nb = torch.linalg.vector_norm(dbar, dim=(-1, -2))
        tiny = torch.finfo(nd.dtype).tiny
        res = torch.where(nd + nb > tiny, nb / (nd + nb).clamp_min(tiny), torch.zeros_like(nb))
        return res.reshape(z.shape[:-1])

    def __repr__(self):
        return f"FisherManifold(n={self.n}, likelihood={self.likelihood!r})"
