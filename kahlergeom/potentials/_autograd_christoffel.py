r"""Christoffel contractions of any batched `KahlerPotential` by reverse-mode ``torch.autograd``.

A potential without closed-form Christoffel contractions gets them, by default, from nested
``torch.func`` forward mode (a jvp of the Levi matrix, itself a vmapped Hessian), whose
per-operation overhead dominates geodesic integrations on small batches. Here the same
quantities come from a few reverse-mode passes over the potential's **batched** ``__call__``
(``(..., n) → (...)``, points independent: the gradient of the batch sum is the per-point
gradient), in real coordinates $x\in\mathbb R^{2n}$ (docs/conventions.md).

**Formulas** (docs/conventions.md § Christoffel contractions by reverse mode). For a complex
vector u write $U$ = ``to_real(u)`` and $JU$ = ``to_real(i u)``; with $D_X$ the real directional
derivative and $H$ the real Hessian of K, the holomorphic directional derivative is
$\partial_u = \sum_a u_a\partial_a = \tfrac12(D_U - i D_{JU})$, so

$$S(u, v) = \partial_u\partial_v K = \tfrac14\big[H(U,V) - H(JU,JV)
  - i\,\big(H(U,JV) + H(JU,V)\big)\big],$$

$T(u, v)_m = \bar\partial_m S = \sum_{ab} u_a v_b\,\partial_a\partial_b\bar\partial_m K
= \tfrac12\,[\texttt{from\_real}(\nabla S_r) + i\,\texttt{from\_real}(\nabla S_i)]_m$
($\nabla$ the real gradient, $S = S_r + i S_i$), and
$\Gamma(u, v) = \sum_{ab}\Gamma^l_{ab}u_a v_b = G^{-\top} T(u, v)$ since
$\Gamma^l_{ab} = \sum_m g^{l\bar m}\partial_a g_{b\bar m}$ and
$\partial_a g_{b\bar m} = \partial_a\partial_b\bar\partial_m K$.
Derivatives along a real direction $dz$ of z (u, v fixed), with $\Gamma = \Gamma(u, v)$:
$D_{dz}\Gamma(u, v) = G^{-\top}\,\bar\partial\big[D_{dz}S(u, v) - \partial_\Gamma D_{dz}K\big]$
($\Gamma$ held constant inside the bracket; $\partial_\Gamma D_{dz}K = \tfrac12[H(\Gamma, dZ)
- i H(J\Gamma, dZ)]$ is the term $-(D_{dz}G)^\top\Gamma$ of $d(G^{-\top})$), and the spray
linearisation $D_{dz}\Gamma(u, u) + 2\Gamma(u, du) = G^{-\top}\bar\partial\big[D_{dz}S(u, u)
+ 2 S(u, du) - \partial_\Gamma D_{dz}K\big]$.

**Evaluation.** Each bracket is $\bar\partial$ of a complex scalar built from Hessian-vector
products, so it is one real gradient per real and imaginary part. The point is copied once per
Hessian-vector product needed (rows of one batch: copy c carries the direction $W_c$), and
$\nabla_x\big[dZ\cdot\nabla(\sum_c A_c\cdot H W_c) + \sum_c B_c\cdot H W_c\big]$ is taken with
three or four reverse passes over the whole batch; the gradient at the point is the sum over
its copies (the chain rule on the diagonal $x_1 = \dots = x_C = x$). The real and imaginary
parts use disjoint copies, so one final pass gives both. $G$ comes from the potential's
closed-form ``levi`` when it has one, else from 2n Hessian columns by two reverse passes.

**Soundness.** Reverse-mode ``torch.autograd`` does not compose with ``torch.func`` transforms,
forward-mode dual tensors, inference mode or inputs that already carry a graph; in any of these
cases the adapter delegates to the potential's own methods (its ``torch.func`` defaults). It
relies on the potential's batched contract: a ``__call__`` whose output does not have the
batch shape raises ``ValueError``; one that mixes points of a batch (batch norm, a sum over
points) breaks the contract and gives wrong symbols — such a potential must not be used.
"""

from __future__ import annotations

import torch
import torch.autograd.forward_ad as fwAD

from kahlergeom._linalg import from_real, levi_from_real_hessian, to_real
from kahlergeom.potentials._base import KahlerPotential


def reverse_mode_usable(*tensors: torch.Tensor) -> bool:
    """Whether plain reverse-mode ``torch.autograd`` on detached copies of ``tensors`` gives the
    right numbers *and* the right autograd behaviour: no ``torch.func`` transform is active, no
    inference mode, no forward-mode dual tensor and no input that requires grad."""
    active = getattr(torch._C, "_are_functorch_transforms_active", None)
    if active is None or active() or torch.is_inference_mode_enabled():
        return False
    for t in tensors:
        if t.requires_grad or fwAD.unpack_dual(t).tangent is not None:
            return False
    return True


def _grad(out: torch.Tensor, x: torch.Tensor, create: bool) -> torch.Tensor:
    """∇_x out (zeros where out does not depend on x, e.g. third derivatives of a quadratic)."""
    if not out.requires_grad:
        return torch.zeros_like(x)
    (g,) = torch.autograd.grad(out, x, create_graph=create, allow_unused=True)
    return torch.zeros_like(x) if g is None else g


def _potential_rows(potential: KahlerPotential, X: torch.Tensor) -> torch.Tensor:
    """K at the rows of ``X`` ``(N, 2n)`` → ``(N,)``, checking the batched contract's shape."""
    K = potential(from_real(X))
    if not isinstance(K, torch.Tensor) or K.shape != X.shape[:1] or K.is_complex():
        got = f"{K.dtype} {tuple(K.shape)}" if isinstance(K, torch.Tensor) else type(K).__name__
        raise ValueError(
            f"potential {potential!r} must map points (N, n) to real values (N,) (the batched "
            f"contract of KahlerPotential.__call__); got {got} for N = {X.shape[0]}."
        )
    return K


def third_derivative_rows(potential, X, W, B, A=None, dZ=None):
    r"""Per row r of ``(N, 2n)`` real tensors, ``(out, h)`` with the Hessian-vector products
    $h_r = H_r W_r$ and
    $out_r = \nabla_r\big[\sum_r dZ_r\cdot\nabla_r(\sum_r A_r\cdot h_r) + \sum_r B_r\cdot h_r\big]$
    ($H_r$ the real Hessian of K at ``X[r]``), both ``(N, 2n)``. Unchecked; three reverse
    passes (four with ``A``)."""
    with torch.enable_grad():
        X = X.detach().requires_grad_(True)
        g = _grad(_potential_rows(potential, X).sum(), X, True)
        h = _grad((g * W).sum(), X, True)
        s = (B * h).sum()
        if A is not None:
            p = _grad((A * h).sum(), X, True)
            s = s + (dZ * p).sum()
        return _grad(s, X, False).detach(), h.detach()


def _bracket(out: torch.Tensor) -> torch.Tensor:
    r"""$\bar\partial Q = \tfrac12[\mathrm{fr}(\nabla Q_r) + i\,\mathrm{fr}(\nabla Q_i)]$
    (fr = ``from_real``) from per-copy gradients ``(C, N, 2n)``: the first C/2 copies sum to
    $\nabla Q_r$, the others to $\nabla Q_i$."""
    C = out.shape[0]
    return 0.5 * (from_real(out[: C // 2].sum(0)) + 1j * from_real(out[C // 2 :].sum(0)))


def _flat(t: torch.Tensor, shape) -> torch.Tensor:
    return t.expand(*shape).reshape(-1, shape[-1])


def _solve_transposed(G: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """$G^{-\top}T$ batched; NaN where G is singular (the integrators stop on non-finite)."""
    X, info = torch.linalg.solve_ex(G.transpose(-1, -2), T.unsqueeze(-1))
    return torch.where((info == 0)[..., None], X.squeeze(-1), torch.nan)


class AutogradChristoffel:
    r"""Christoffel contractions of a batched `KahlerPotential` by reverse-mode autograd.

    Offers ``christoffel_contract(z, u, v)``, ``christoffel_contract_derivative(z, dz, u, v)``
    and ``christoffel_spray_linearised(z, u, dz, du)`` with the meanings, shapes (complex
    ``(..., n)``, broadcast) and index convention of `KahlerPotential`'s methods
    ($\Gamma(u, v)_l = \sum_{ab}\Gamma^l_{ab}u_a v_b$, $\Gamma[..., l, a, b]$ as in
    docs/conventions.md), plus ``levi(z)``. `kahlergeom.KahlerManifold.closed_form_christoffel`
    returns one for a potential without closed-form contractions, so its geodesic and
    variational equations need no ``torch.func`` transform. The formulas are in this module's
    docstring; outside plain eager autograd (transforms, dual tensors, inference mode, inputs
    requiring grad) every method delegates to the potential's own.

    Example:
        >>> import torch
        >>> from kahlergeom.potentials import AutogradChristoffel, FubiniStudy
        >>> z = torch.tensor([0.3 + 0.1j, -0.2j], dtype=torch.complex128)
        >>> u = torch.tensor([1.0 + 0j, 0.5j], dtype=torch.complex128)
        >>> ag = AutogradChristoffel(FubiniStudy(2)).christoffel_contract(z, u, u)
        >>> torch.allclose(ag, FubiniStudy(2).christoffel_contract(z, u, u))
        True
    """

    def __init__(self, potential: KahlerPotential):
        if not isinstance(potential, KahlerPotential):
            raise ValueError(
                "potential must be a kahlergeom.potentials.KahlerPotential (batched __call__); "
                f"got {type(potential).__name__}."
            )
        self.potential = potential
        self.n = potential.n
        self._cache = None

    # -- the Levi matrix --------------------------------------------------------------------
    def _levi_flat(self, zf: torch.Tensor) -> torch.Tensor:
        """G at flattened points ``(N, n)`` → ``(N, n, n)``."""
        p = self.potential
        if p.has_closed_form_levi:
            return p.levi(zf)
        N, m = zf.shape[0], 2 * self.n
        X = to_real(zf).unsqueeze(0).expand(m, N, m).reshape(m * N, m)
        E = torch.eye(m, dtype=X.dtype, device=X.device)
        W = E[:, None, :].expand(m, N, m).reshape(m * N, m)
        with torch.enable_grad():
            X = X.detach().requires_grad_(True)
            g = _grad(_potential_rows(p, X).sum(), X, True)
            cols = _grad((g * W).sum(), X, False).detach()
        H = cols.reshape(m, N, m).permute(1, 2, 0)  # H[:, :, k] = H e_k
        return levi_from_real_hessian(H)

    def levi(self, z: torch.Tensor) -> torch.Tensor:
        r"""Levi matrix $G[a, b] = \partial_a\bar\partial_b K$, ``(..., n)`` → ``(..., n, n)``:
        the potential's closed form when it has one, else 2n reverse-mode Hessian columns."""
        if not reverse_mode_usable(z):
            return self.potential.levi(z)
        zf = z.reshape(-1, self.n)
        return self._levi_flat(zf).reshape(*z.shape, self.n)

    # -- contractions -----------------------------------------------------------------------
    def _brackets(self, rows, extra=None):
        r"""$\bar\partial Q$ from copies ``[(X, W, B, A, dZ), ...]`` (``(N, 2n)`` each; A and
        dZ may be ``None``): the first half of the copies builds $Q_r$, the second $Q_i$.

        ``extra`` ``(X, W)``: more rows whose Hessian-vector products $H W$ are returned as
        well (second value; ``None`` without), riding along in the same passes.
        """
        C = len(rows)
        cols = [[r[k] for r in rows] for k in range(3)]
        if extra is not None:
            cols[0].append(extra[0])
            cols[1].append(extra[1])
            cols[2].append(torch.zeros_like(extra[0]))
        X, W, B = (torch.cat(c) for c in cols)
        A = dZ = None
        if any(r[3] is not None for r in rows):
            zero = torch.zeros_like(X[: X.shape[0] - (0 if extra is None else extra[0].shape[0])])
            A = torch.cat([r[3] if r[3] is not None else zero[: r[0].shape[0]] for r in rows])
            dZ = torch.cat([r[4] for r in rows])
            if extra is not None:
                A = torch.cat([A, torch.zeros_like(extra[0])])
                dZ = torch.cat([dZ, torch.zeros_like(extra[0])])
        out, h = third_derivative_rows(self.potential, X, W, B, A, dZ)
        N = rows[0][0].shape[0]
        out = out[: C * N].reshape(C, N, X.shape[-1])
        gr, gi = out[: C // 2].sum(0), out[C // 2 :].sum(0)
        T = 0.5 * (from_real(gr) + 1j * from_real(gi))
        return T, (None if extra is None else h[C * N :])

    def _contract_flat(self, zf, uf, vf):
        """``(G, Γ(u, v))`` at flattened rows ``(N, n)``; the Hessian columns for G (when the
        potential has no closed-form ``levi``) ride along in the same reverse passes."""
        X, U, JU, V, JV = to_real(zf), to_real(uf), to_real(1j * uf), to_real(vf), to_real(1j * vf)
        N, m = X.shape
        closed = self.potential.has_closed_form_levi
        extra = None
        if not closed:
            E = torch.eye(m, dtype=X.dtype, device=X.device)
            extra = (X.repeat(m, 1), E.repeat_interleave(N, 0))
        # S_r = ¼(U·HV − JU·HJV), S_i = −¼(U·HJV + JU·HV).
        T, cols = self._brackets(
            [
                (X, V, 0.25 * U, None, None),
                (X, JV, -0.25 * JU, None, None),
                (X, JV, -0.25 * U, None, None),
                (X, V, -0.25 * JU, None, None),
            ],
            extra,
        )
        if closed:
            G = self.potential.levi(zf)
        else:
            G = levi_from_real_hessian(cols.reshape(m, N, m).permute(1, 2, 0))
        return G, _solve_transposed(G, T)

    def _lookup(self, zf, uf, vf):
        """The cached ``(G, Γ(u, v))`` of the last evaluation at exactly these rows, else
        ``None``. A variational right-hand side asks for G and Γ(ż, ż) at the same points
        twice (the base of the linearisation and the geodesic's own acceleration); compared
        by value, so in-place changes of the inputs are safe."""
        c = self._cache
        if c is None:
            return None
        for a, b in zip(c[0], (zf, uf, vf), strict=True):
            if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
                return None
            if not torch.equal(a, b):
                return None
        return c[1]

    def _store(self, zf, uf, vf, out):
        self._cache = ((zf.clone(), uf.clone(), vf.clone()), out)

    def _contract_cached(self, zf, uf, vf):
        """`_contract_flat` through the one-entry cache (`_lookup`)."""
        out = self._lookup(zf, uf, vf)
        if out is None:
            out = self._contract_flat(zf, uf, vf)
            self._store(zf, uf, vf, out)
        return out

    def christoffel_contract(self, z: torch.Tensor, u: torch.Tensor, v: torch.Tensor):
        r"""$\Gamma(u, v)_l = \sum_{ab}\Gamma^l_{ab}(z)u_a v_b = [G^{-\top}T(u, v)]_l$,
        ``(..., n)`` (broadcast)."""
        if not reverse_mode_usable(z, u, v):
            return self.potential.christoffel_contract(z, u, v)
        shape = torch.broadcast_shapes(z.shape, u.shape, v.shape)
        _, Gam = self._contract_cached(_flat(z, shape), _flat(u, shape), _flat(v, shape))
        return Gam.reshape(shape)

    def _derivative_fused(self, z, u, v, dz, shape, rows, finals):
        r"""$G^{-\top}\bar\partial Q$ at the rows of ``shape`` for brackets Q whose final
        left vectors depend on $\Gamma = \Gamma(u, v)$ (`christoffel_contract_derivative`,
        `christoffel_spray_linearised`).

        G and Γ(u, v) are needed only at the base points (the broadcast of z, u, v), and in
        the last pass only: their rows ride along in the same graph, so the whole evaluation
        is one forward and four reverse passes (G and Γ are also left in the cache, for the
        geodesic's own acceleration at the same points).

        ``rows(X, U, JU, V, JV, dZ)`` gives ``[(W, A), ...]`` per copy (A may be ``None``),
        ``finals(R, JR)`` the matching ``B`` list, with R = ``to_real(Γ)``, JR =
        ``to_real(iΓ)`` at the rows; the first half of the copies builds $Q_r$, the second
        $Q_i$ (docs/conventions.md).
        """
        base = torch.broadcast_shapes(z.shape, u.shape, v.shape)
        z0, u0, v0 = _flat(z, base), _flat(u, base), _flat(v, base)
        N0, m = z0.shape[0], 2 * self.n
        idx = torch.arange(N0, device=z0.device).reshape(base[:-1]).expand(shape[:-1]).reshape(-1)
        X0, U0, V0 = to_real(z0), to_real(u0), to_real(v0)
        JU0, JV0 = to_real(1j * u0), to_real(1j * v0)
        X, dZ = X0[idx], to_real(_flat(dz, shape))
        spec = rows(X, U0[idx], JU0[idx], V0[idx], JV0[idx], dZ)
        C, N = len(spec), X.shape[0]
        Xs = [X] * C
        Ws = [w for w, _ in spec]
        As = [torch.zeros_like(X) if a is None else a for _, a in spec]
        cached = self._lookup(z0, u0, v0)
        closed = self.potential.has_closed_form_levi
        if cached is None:  # Γ(u, v)'s rows: S_r = ¼(U·HV − JU·HJV), S_i = −¼(U·HJV + JU·HV)
            Xs += [X0] * 4
            Ws += [V0, JV0, JV0, V0]
            As += [0.25 * U0, -0.25 * JU0, -0.25 * U0, -0.25 * JU0]
            if not closed:  # Hessian columns for G
                E = torch.eye(m, dtype=X.dtype, device=X.device)
                Xs.append(X0.repeat(m, 1))
                Ws.append(E.repeat_interleave(N0, 0))
                As.append(torch.zeros_like(Xs[-1]))
        Xa, Wa, Aa = torch.cat(Xs), torch.cat(Ws), torch.cat(As)
        with torch.enable_grad():
            Xl = Xa.detach().requires_grad_(True)
            g = _grad(_potential_rows(self.potential, Xl).sum(), Xl, True)
            h = _grad((g * Wa).sum(), Xl, True)
            p = _grad((Aa * h).sum(), Xl, True)
            if cached is None:
                T0 = _bracket(p[C * N : C * N + 4 * N0].detach().reshape(4, N0, m))
                if closed:
                    G0 = self.potential.levi(z0)
                else:
                    cols = h[C * N + 4 * N0 :].detach().reshape(m, N0, m)
                    G0 = levi_from_real_hessian(cols.permute(1, 2, 0))
                cached = (G0, _solve_transposed(G0, T0))
                self._store(z0, u0, v0, cached)
            G0, Gam0 = cached
            Gam = Gam0[idx]
            Bs = finals(to_real(Gam), to_real(1j * Gam))
            s = (dZ.repeat(C, 1) * p[: C * N]).sum() + (torch.cat(Bs) * h[: C * N]).sum()
            out = _grad(s, Xl, False)[: C * N].detach()
        T = _bracket(out.reshape(C, N, m))
        return _solve_transposed(G0[idx], T).reshape(shape)

    def christoffel_contract_derivative(self, z, dz, u, v):
        r"""$\frac{d}{d\epsilon}\Gamma_{z+\epsilon\,dz}(u, v)$ at 0, ``(..., n)``:
        $G^{-\top}\bar\partial[D_{dz}S(u, v) - \partial_\Gamma D_{dz}K]$ with
        $\Gamma = \Gamma(u, v)$ held constant inside the bracket (broadcast)."""
        if not reverse_mode_usable(z, dz, u, v):
            return self.potential.christoffel_contract_derivative(z, dz, u, v)
        shape = torch.broadcast_shapes(z.shape, dz.shape, u.shape, v.shape)

        # Q_r = dZ·∇¼(U·HV − JU·HJV) − ½ Γ·H dZ ;  Q_i = dZ·∇(−¼)(U·HJV + JU·HV) + ½ JΓ·H dZ.
        def rows(X, U, JU, V, JV, dZ):
            return [
                (V, 0.25 * U),
                (JV, -0.25 * JU),
                (dZ, None),
                (JV, -0.25 * U),
                (V, -0.25 * JU),
                (dZ, None),
            ]

        def finals(R, JR):
            zero = torch.zeros_like(R)
            return [zero, zero, -0.5 * R, zero, zero, 0.5 * JR]

        return self._derivative_fused(z, u, v, dz, shape, rows, finals)

    def christoffel_spray_linearised(self, z, u, dz, du):
        r"""$D_{dz}\Gamma_z(u, u) + 2\Gamma_z(u, du)
        = G^{-\top}\bar\partial[D_{dz}S(u, u) + 2S(u, du) - \partial_\Gamma D_{dz}K]$,
        $\Gamma = \Gamma(u, u)$, ``(..., n)`` (broadcast). G and Γ(u, u) are evaluated once per
        base point (the broadcast of z and u), the bracket once per tangent; one forward and
        four reverse passes in all."""
        if not reverse_mode_usable(z, u, dz, du):
            return self.potential.christoffel_spray_linearised(z, u, dz, du)
        shape = torch.broadcast_shapes(z.shape, u.shape, dz.shape, du.shape)
        duf = _flat(du, shape)
        dU, JdU = to_real(duf), to_real(1j * duf)

        # Q_r = dZ·∇¼(U·HU − JU·HJU) + ½(dU·HU − JdU·HJU) − ½ Γ·H dZ
        # Q_i = dZ·∇(−½ U·HJU) − ½(dU·HJU + JdU·HU) + ½ JΓ·H dZ   (H symmetric)
        def rows(X, U, JU, V, JV, dZ):
            return [
                (U, 0.25 * U),
                (JU, -0.25 * JU),
                (dZ, None),
                (JU, -0.5 * U),
                (U, None),
                (dZ, None),
            ]

        def finals(R, JR):
            return [0.5 * dU, -0.5 * JdU, -0.5 * R, -0.5 * dU, -0.5 * JdU, 0.5 * JR]

        return self._derivative_fused(z, u, u, dz, shape, rows, finals)

    def __repr__(self) -> str:
        return f"AutogradChristoffel({self.potential!r})"
