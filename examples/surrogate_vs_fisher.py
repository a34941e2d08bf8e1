"""LSE surrogate metric from encoder posteriors vs the exact Fisher metric of the decoder.

Run: .venv/bin/python examples/surrogate_vs_fisher.py [--out PATH] [--quick]

Trains a small complex VAE (n = 2) on the bundled digits, builds the log-sum-exp surrogate
potential from the encoder posteriors CN(m_j, Γ_j) of the training images
(`kahlergeom.surrogates.from_posteriors`, with and without subtracting the prior precision,
reduced to m components), and measures it against the exact Fisher metric
(`kahlergeom.FisherManifold`) at the posterior means of held-out images (τ is chosen on
another held-out half): the CDF of the relative Frobenius error
‖G_surrogate − G‖_F / ‖G‖_F, plus the Spearman correlation of log det G. The surrogate is
a cheap approximation: how close it gets is measured here, not assumed.
"""

import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from _common import digits, parse_args, save, train_vae  # noqa: E402

import kahlergeom as kg  # noqa: E402


def main() -> None:
    args = parse_args("surrogate_vs_fisher", __doc__)
    x, _ = digits(400 if args.quick else None)
    n_test = 100 if args.quick else 300
    x_train, x_test = x[:-n_test], x[-n_test:]
    model, _ = train_vae(x_train, 2, 1 if args.quick else 30, seed=args.seed)
    exact = kg.FisherManifold(model.decoder, n=2)

    q_train = model.encode(x_train)
    z_held = model.encode(x_test).mean
    z_val, z_test = z_held[: n_test // 2], z_held[n_test // 2 :]  # τ chosen on z_val only
    G_val = exact.metric(z_val)
    t = time.perf_counter()
    G = exact.metric(z_test)
    t_exact = time.perf_counter() - t

    m = 32 if args.quick else 128
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for label, prior in (("posterior precision", None), ("minus prior precision", 1.0)):
        sur = kg.surrogates.from_posteriors(
            q_train.mean,
            q_train.covariance,
            prior_precision=prior,
            on_indefinite="clip",
            m=m,
            seed=args.seed,
        )
        choice = kg.surrogates.choose_temperature(sur, z_val, G_val)
        sur = choice.surrogate  # rebuilt with the chosen temperature
        M = kg.KahlerManifold(sur)
        t = time.perf_counter()
        Gs = M.metric(z_test)
        t_sur = time.perf_counter() - t
        err = kg.surrogates.relative_frobenius_error(Gs, G)
        rho = kg.surrogates.spearman(
            kg.manifolds.hermitian_logdet(Gs), kg.manifolds.hermitian_logdet(G)
        )
        print(
            f"{label}: m = {m}, τ = {choice.temperature:.3g}, median rel. error "
            f"{err.median().item():.3f}, Spearman(log det) {float(rho):.3f}, "
            f"time {t_sur * 1e3:.1f} ms vs exact {t_exact * 1e3:.1f} ms"
        )
        e = torch.sort(err).values
        ax.step(
            e,
            torch.arange(1, len(e) + 1) / len(e),
            where="post",
            label=f"{label} (median {err.median().item():.2f})",
        )
    ax.set_xscale("log")
    ax.set_xlabel("relative Frobenius error ‖G_surrogate − G_Fisher‖ / ‖G_Fisher‖")
    ax.set_ylabel("fraction of held-out codes")
    ax.set_title("LSE surrogate vs exact Fisher metric (n = 2)")
    ax.legend()
    save(fig, args.out)


if __name__ == "__main__":
    main()
