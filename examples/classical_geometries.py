"""Fubini–Study and the complex hyperbolic ball: metric, volume and PSH checks.

Run: .venv/bin/python examples/classical_geometries.py

Prints, for both classical geometries in C², the metric at a point computed two ways (closed
form and autodiff), the volume density and the PSH check.
"""

import torch

import kahlergeom as kg


def main() -> None:
    torch.manual_seed(0)
    z = torch.tensor([0.3 + 0.1j, -0.2 + 0.4j], dtype=torch.complex128)

    for potential in (kg.potentials.FubiniStudy(2), kg.potentials.ComplexHyperbolic(2)):
        M = kg.KahlerManifold(potential)
        G_closed = M.metric(z)
        G_autodiff = kg.ddbar(potential, z)
        print(f"{potential!r}")
        print("  G(z) =\n", G_closed.numpy().round(4))
        print(f"  closed form vs autodiff: {(G_closed - G_autodiff).abs().max().item():.1e}")
        print(f"  det G = {M.volume_density(z).item():.6f}, PSH: {bool(M.is_psh(z))}")


if __name__ == "__main__":
    main()
