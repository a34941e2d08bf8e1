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
closed-form ``levi`` when it has one, else from 2n Hessian columns riding along in the same
passes. The derivatives need $\Gamma(u, v)$ only in their last pass, so its rows ride along
too: a derivative costs one forward and four reverse passes, $\Gamma$ alone one and three.

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


def _tensors_of(obj, depth: int = 3) -> list:
    """The tensors a potential holds: its attributes, lists of them, ``torch.nn`` modules'
    parameters and buffers, nested potentials (to ``depth``)."""
    out: list = []
    if depth < 0 or not hasattr(obj, "__dict__"):
        return out
    for v in vars(obj).values():
        for x in v if isinstance(v, (list, tuple)) else (v,):
            if isinstance(x, torch.Tensor):
                out.append(x)
            elif isinstance(x, torch.nn.Module):
                out.extend(x.parameters())
                out.extend(x.buffers())
            elif isinstance(x, KahlerPotential):
                out.extend(_tensors_of(x, depth - 1))
    return out


def _state_token(potential) -> tuple:
    """Each tensor the potential holds with its in-place version: a cached result is reused
    only while the same tensors (by identity; the token keeps them alive, so an id cannot be
    reused) are at the same versions."""
    return tuple((t, t._version) for t in _tensors_of(potential))


def _same_state(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(x is y and u == v for (x, u), (y, v) in zip(a, b, strict=True))


def _bracket(out: torch.Tensor) -> torch.Tensor:
    r"""$\bar\partial Q = \tfrac12[\mathrm{fr}(\nabla Q_r) + i\,\mathrm{fr}(\nabla Q_i)]$
    (fr = ``from_real``) from per-copy gradients ``(C, N, 2n)``: the first C/2 copies sum to
    $\nabla Q_r$, the others to $\nabla Q_i$."""
    C = out.shape[0]
    return 0.5 * (from_real(out[: C // 2].sum(0)) + 1j * from_real(out[C // 2 :].sum(0)))


def _broadcast_shape(*shapes) -> tuple:
    """``torch.broadcast_shapes`` without its per-call overhead (called per ODE stage)."""
    if all(s == shapes[0] for s in shapes[1:]):
        return tuple(shapes[0])
    nd = max(len(s) for s in shapes)
    out = []
    for i in range(-nd, 0):
        d = 1
        for s in shapes:
            k = s[i] if len(s) >= -i else 1
            if k != 1:
                if d not in (1, k):
                    raise ValueError(f"shapes {[tuple(x) for x in shapes]} do not broadcast.")
                d = k
        out.append(d)
    return tuple(out)


def _flat(t: torch.Tensor, shape) -> torch.Tensor:
    return (t if tuple(t.shape) == shape else t.expand(*shape)).reshape(-1, shape[-1])


def _solve_transposed(G: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """$G^{-\top}T$ batched; NaN where G is singular (the integrators stop on non-finite)."""
    X, info = torch.linalg.solve_ex(G.transpose(-1, -2), T.unsqueeze(-1))
    return torch.where((info == 0)[..., None], X.squeeze(-1), torch.nan)


# Copy layouts: per copy c, complex coefficients that make its real vectors from the complex
# tangents (to_real of a complex multiple: to_real(i·u) = JU). W_c: Hessian-vector direction;
# A_c: left vector of the inner gradient (Γ's own T: its final left vector); B_c: final left
# vector. First half of the copies: real part Q_r, second half: Q_i (docs/conventions.md).
#: Γ(u, v): S_r = ¼(U·HV − JU·HJV), S_i = −¼(U·HJV + JU·HV).
_GAMMA_W = (1, 1j, 1j, 1)  # × v
_GAMMA_A = (0.25, -0.25j, -0.25, -0.25j)  # × u
#: D_dz Γ(u, v) = ∂̄[dZ·∇S(u, v) − ∂_Γ D_dz K]:
#: Q_r = dZ·∇¼(U·HV − JU·HJV) − ½ Γ·H dZ,  Q_i = dZ·∇(−¼)(U·HJV + JU·HV) + ½ JΓ·H dZ.
_DERIVATIVE = dict(
    Wv=(1, 1j, 0, 1j, 1, 0),
    Wdz=(0, 0, 1, 0, 0, 1),
    Au=(0.25, -0.25j, 0, -0.25, -0.25j, 0),
    Bdu=(0, 0, 0, 0, 0, 0),
    Bgam=(0, 0, -0.5, 0, 0, 0.5j),
)
#: Spray D_dz Γ(u, u) + 2Γ(u, du) = ∂̄[dZ·∇S(u, u) + 2S(u, du) − ∂_Γ D_dz K], H symmetric:
#: Q_r = dZ·∇¼(U·HU − JU·HJU) + ½(dU·HU − JdU·HJU) − ½ Γ·H dZ,
#: Q_i = dZ·∇(−½ U·HJU) − ½(dU·HJU + JdU·HU) + ½ JΓ·H dZ.
_SPRAY = dict(
    Wv=(1, 1j, 0, 1j, 1, 0),
    Wdz=(0, 0, 1, 0, 0, 1),
    Au=(0.25, -0.25j, 0, -0.5, 0, 0),
    Bdu=(0.5, -0.5j, 0, -0.5, -0.5j, 0),
    Bgam=(0, 0, -0.5, 0, 0, 0.5j),
)


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

    The last G and Γ(u, v) are remembered (inputs compared by value, the potential's tensors by
    identity and in-place version): a variational right-hand side
    asks for them at the same points twice (the base of the linearisation, then the
    geodesic's own acceleration). Results carry no graph, except for a potential holding
    tensors that require grad (attributes, ``torch.nn`` modules, nested potentials) while grad
    mode is on: then they stay differentiable in those tensors.

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
        if not potential.batched_call:
            raise ValueError(
                f"potential {potential!r} is not batched (KahlerPotential.batched_call is "
                "False: its __call__ does not evaluate any batch of points independently); "
                "reverse-mode "
                "contractions need that contract."
            )
        self.potential = potential
        self.n = potential.n
        self._trainable = any(t.requires_grad for t in _tensors_of(potential))
        self._cache = None
        self._coefs: dict = {}

    def _coef(self, values, like: torch.Tensor) -> torch.Tensor:
        """The coefficients as a complex ``(C, 1, 1)`` tensor of ``like``'s dtype and device."""
        key = (values, like.dtype, like.device)
        c = self._coefs.get(key)
        if c is None:
            c = self._coefs[key] = torch.tensor(values, dtype=like.dtype, device=like.device)
            c = self._coefs[key] = c[:, None, None]
        return c

    # -- the engine --------------------------------------------------------------------------
    def _lookup(self, zf, uf, vf):
        """The cached ``(G, Γ(u, v))`` at exactly these rows and the same potential state
        (`_state_token`), else ``None``."""
        c = self._cache
        if c is None or not _same_state(c[2], _state_token(self.potential)):
            return None
        for a, b in zip(c[0], (zf, uf, vf), strict=True):
            if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
                return None
            if not torch.equal(a, b):
                return None
        return c[1]

    def _evaluate(self, z0, u0, v0, deriv=None):
        r"""``(G, Γ(u, v))`` at the flat base rows ``(N0, n)``, and with ``deriv = (layout, idx,
        dz, du)`` also $G^{-\top}\bar\partial Q$ at the derivative rows ``(N, n)`` (row r at base
        row ``idx[r]``; ``layout`` `_DERIVATIVE` or `_SPRAY`), all from one forward pass and
        three (Γ alone) or four reverse passes."""
        # A potential with trainable tensors keeps its graph (results differentiable in them);
        # then nothing is cached (a cached graph may be freed by the caller's backward).
        keep = self._trainable and torch.is_grad_enabled()
        cached = None if keep else self._lookup(z0, u0, v0)
        if cached is not None and deriv is None:
            return cached, None
        pot, m = self.potential, 2 * self.n
        closed = pot.has_closed_form_levi
        Xs, Ws, As = [], [], []
        if deriv is not None:
            layout, idx, dz, du = deriv
            N = idx.shape[0]
            C = len(layout["Wv"])
            zr, ur, vr = z0[idx], u0[idx], v0[idx]
            dZ = to_real(dz)
            Xs.append(to_real(zr).expand(C, N, m))
            Wc = self._coef(layout["Wv"], z0) * vr + self._coef(layout["Wdz"], z0) * dz
            Ws.append(to_real(Wc))
            As.append(to_real(self._coef(layout["Au"], z0) * ur))
        if cached is None:
            N0 = z0.shape[0]
            X0 = to_real(z0)
            Xs.append(X0.expand(4, N0, m))
            Ws.append(to_real(self._coef(_GAMMA_W, z0) * v0))
            As.append(to_real(self._coef(_GAMMA_A, z0) * u0))
            if not closed:  # Hessian columns H e_k for G
                E = torch.eye(m, dtype=X0.dtype, device=X0.device)
                Xs.append(X0.expand(m, N0, m))
                Ws.append(E[:, None, :].expand(m, N0, m))
                As.append(torch.zeros(m, N0, m, dtype=X0.dtype, device=X0.device))
        X = torch.cat([x.reshape(-1, m) for x in Xs])
        W = torch.cat([w.reshape(-1, m) for w in Ws])
        A = torch.cat([a.reshape(-1, m) for a in As])
        nd = 0 if deriv is None else C * N

        def cut(t):
            return t if keep else t.detach()

        # A closed-form G under the caller's grad mode (no graph to trainable tensors under
        # no_grad); the Hessian columns otherwise come out of the passes below.
        G0 = pot.levi(z0) if cached is None and closed else None
        with torch.enable_grad():
            X = X.detach().requires_grad_(True)
            g = _grad(_potential_rows(pot, X).sum(), X, True)
            h = _grad((g * W).sum(), X, True)
            p = _grad((A * h).sum(), X, deriv is not None or keep)
            if cached is None:
                N0 = z0.shape[0]
                T0 = _bracket(cut(p[nd : nd + 4 * N0]).reshape(4, N0, m))
                if not closed:
                    cols = cut(h[nd + 4 * N0 :]).reshape(m, N0, m)
            if deriv is not None:
                if cached is None:
                    if not closed:  # H[:, :, k] = H e_k
                        G0 = levi_from_real_hessian(cols.permute(1, 2, 0))
                    Gam0 = _solve_transposed(G0, T0)
                else:
                    G0, Gam0 = cached
                Bc = self._coef(layout["Bdu"], z0) * du + self._coef(layout["Bgam"], z0) * Gam0[idx]
                pd, hd = p[:nd].reshape(C, N, m), h[:nd].reshape(C, N, m)
                out = cut(_grad((dZ * pd).sum() + (to_real(Bc) * hd).sum(), X, keep)[:nd])
        if cached is None:
            if deriv is None:
                if not closed:
                    G0 = levi_from_real_hessian(cols.permute(1, 2, 0))
                Gam0 = _solve_transposed(G0, T0)
            cached = (G0, Gam0)
            if not keep:
                key = (z0.clone(), u0.clone(), v0.clone())
                self._cache = (key, cached, _state_token(pot))
        if deriv is None:
            return cached, None
        return cached, _solve_transposed(G0[idx], _bracket(out.reshape(C, N, m)))

    def _derivative(self, layout, z, u, v, dz, du):
        """`_evaluate` for broadcast inputs: G and Γ at the broadcast of (z, u, v) only (the
        tangents of a variational system share their base point), the bracket per row."""
        base = _broadcast_shape(z.shape, u.shape, v.shape)
        shape = _broadcast_shape(base, dz.shape, du.shape)
        z0, u0, v0 = _flat(z, base), _flat(u, base), _flat(v, base)
        idx = torch.arange(z0.shape[0], device=z0.device)
        idx = idx.reshape(base[:-1]).expand(shape[:-1]).reshape(-1)
        _, out = self._evaluate(z0, u0, v0, (layout, idx, _flat(dz, shape), _flat(du, shape)))
        return out.reshape(shape)

    # -- public methods ----------------------------------------------------------------------
    def levi(self, z: torch.Tensor) -> torch.Tensor:
        r"""Levi matrix $G[a, b] = \partial_a\bar\partial_b K$, ``(..., n)`` → ``(..., n, n)``:
        the potential's closed form when it has one, else 2n reverse-mode Hessian columns."""
        if not reverse_mode_usable(z) or self.potential.has_closed_form_levi:
            return self.potential.levi(z)
        zf = z.reshape(-1, self.n)
        (G, _), _ = self._evaluate(zf, zf, zf)
        return G.reshape(*z.shape, self.n)

    def christoffel_contract(self, z: torch.Tensor, u: torch.Tensor, v: torch.Tensor):
        r"""$\Gamma(u, v)_l = \sum_{ab}\Gamma^l_{ab}(z)u_a v_b = [G^{-\top}T(u, v)]_l$,
        ``(..., n)`` (broadcast)."""
        if not reverse_mode_usable(z, u, v):
            return self.potential.christoffel_contract(z, u, v)
        shape = _broadcast_shape(z.shape, u.shape, v.shape)
        (_, Gam), _ = self._evaluate(_flat(z, shape), _flat(u, shape), _flat(v, shape))
        return Gam.reshape(shape)

    def christoffel_contract_derivative(self, z, dz, u, v):
        r"""$\frac{d}{d\epsilon}\Gamma_{z+\epsilon\,dz}(u, v)$ at 0, ``(..., n)``:
        $G^{-\top}\bar\partial[D_{dz}S(u, v) - \partial_\Gamma D_{dz}K]$ with
        $\Gamma = \Gamma(u, v)$ held constant inside the bracket (broadcast)."""
        if not reverse_mode_usable(z, dz, u, v):
            return self.potential.christoffel_contract_derivative(z, dz, u, v)
        return self._derivative(_DERIVATIVE, z, u, v, dz, torch.zeros_like(dz))

    def christoffel_spray_linearised(self, z, u, dz, du):
        r"""$D_{dz}\Gamma_z(u, u) + 2\Gamma_z(u, du)
        = G^{-\top}\bar\partial[D_{dz}S(u, u) + 2S(u, du) - \partial_\Gamma D_{dz}K]$,
        $\Gamma = \Gamma(u, u)$, ``(..., n)`` (broadcast). G and Γ(u, u) are evaluated once per
        base point (the broadcast of z and u), the bracket once per tangent; one forward and
        four reverse passes in all."""
        if not reverse_mode_usable(z, u, dz, du):
            return self.potential.christoffel_spray_linearised(z, u, dz, du)
        return self._derivative(_SPRAY, z, u, u, dz, du)

    def __repr__(self) -> str:
        return f"AutogradChristoffel({self.potential!r})"
