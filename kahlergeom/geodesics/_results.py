"""Result records of geodesic problems, with one status vocabulary (`STATUS_NAMES`) for all."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kahlergeom.geodesics._ode import SUCCESS, reasons


@dataclass
class ExpResult:
    """Outcome of `kahlergeom.geodesics.exp` (shapes follow the broadcast batch ``(...)``).

    Attributes:
        point: end points ``exp_z(v)`` ``(..., n)`` (last accepted state where it failed).
        velocity: velocity at t = 1 ``(..., n)``.
        success: bool ``(...)``: ``status == "success"``.
        status: int codes ``(...)`` (see `kahlergeom.geodesics.STATUS_NAMES`: success, left_domain,
            step_underflow, max_steps, speed_drift, non_finite).
        reasons: counts of each outcome, e.g. ``{"success": 9, "left_domain": 1}``.
        n_steps: accepted steps ``(...)``.
        connection: ``"kahler"`` or ``"levi-civita"``.
        transported: the transported vector at t = 1 ``(..., n)``, or ``None``.
        points: states at requested times ``(..., n_points, n)``, or ``None``.
    """

    point: torch.Tensor
    velocity: torch.Tensor
    success: torch.Tensor
    status: torch.Tensor
    reasons: dict
    n_steps: torch.Tensor
    connection: str
    transported: torch.Tensor | None = None
    points: torch.Tensor | None = None


@dataclass
class LogResult:
    """Outcome of a boundary-value solve between z and w (batch ``(...)``): one solve, everything.

    A solver fills ``velocity``, ``length``, ``converged``, ``residual``,
    ``candidate_lengths`` and ``connection``; it may fill ``certified`` (else
    `kahlergeom.geodesics.solve_log` certifies the returned geodesic itself). ``status``,
    ``certificate`` and ``points`` are completed by `solve_log`; a discrete-curve solver also
    fills ``discretisation`` and ``nodes``.

    Attributes:
        velocity: initial velocity v with ``exp_z(v) ≈ w`` ``(..., n)``.
        length: ``|v|_{G(z)}``, the length of the geodesic found ``(...)``.
        converged: bool ``(...)``: the adaptive endpoint miss ``|exp_z(v) − w|_{G(w)}`` is at
            most the solver's tolerance.
        residual: that endpoint miss ``(...)`` (inf where the integration failed, NaN where
            it met a non-finite metric field).
        candidate_lengths: lengths of every candidate ``(..., S)`` (NaN where it did not
            converge or was not certified); ``length`` is their minimum.
        connection: ``"kahler"`` or ``"levi-civita"``.
        solver: the solver object that produced it.
        certified: bool ``(...)``: the geodesic has no conjugate point on (0, 1] (the
            differential of exp_z along t·v stays non-singular), so it is locally minimising;
            ``None`` until certified.
        status: int codes ``(...)`` (see `kahlergeom.geodesics.STATUS_NAMES`): ``success``
            (converged and certified), ``not_converged``, ``conjugate_point`` (only candidates
            through a conjugate point, i.e. not the distance), ``non_finite`` (every candidate's
            integration met a non-finite metric field), or an integrator failure.
        certificate: what a certified length means for this manifold: ``"local"`` (locally
            minimising), or ``"global"`` when the manifold declares non-positive curvature on a
            simply connected domain (Cartan–Hadamard: the geodesic is the unique one, and the
            length is the distance); ``"polyline"`` / ``"discrete"``: the length of a curve
            from z to w (an upper bound of the distance) that minimises a discrete energy.
        points: points of the geodesic at equally spaced times ``(..., n_points, n)`` when
            requested, else ``None``.
        discretisation: for discrete-curve solvers (`DiscreteEnergy`), the estimated relative
            discretisation error of the length ``(...)`` (from the lengths at K/8, K/4, K/2 and
            K segments; its check), else ``None``.
        nodes: the discrete curve's nodes at t = k/K ``(..., K+1, n)`` (`DiscreteEnergy`
            without refinement; ``points`` are then sampled from its spline), else ``None``.
        holomorphic: for `DiscreteEnergy` with the divergence energy, bool ``(...)``: the pair's
            curve minimises the energy without the rotated term (the decoder's real Fisher
            matrix was found J-invariant, or declared so), else ``None``.
    """

    velocity: torch.Tensor
    length: torch.Tensor
    converged: torch.Tensor
    residual: torch.Tensor
    candidate_lengths: torch.Tensor
    connection: str
    solver: object | None = None
    certified: torch.Tensor | None = None
    status: torch.Tensor | None = None
    certificate: str = "local"
    points: torch.Tensor | None = None
    discretisation: torch.Tensor | None = None
    nodes: torch.Tensor | None = None
    holomorphic: torch.Tensor | None = None

    @property
    def success(self) -> torch.Tensor:
        """bool ``(...)``: converged and certified (``status == "success"``)."""
        if self.status is None:
            ok = self.converged
            return ok if self.certified is None else ok & self.certified
        return self.status == SUCCESS

    @property
    def reasons(self) -> dict[str, int]:
        """Counts of each outcome, e.g. ``{"success": 31, "conjugate_point": 1}``."""
        return reasons(self.status) if self.status is not None else {}
