"""Training a complex VAE with and without the geometric regulariser on log det G.

Run: .venv/bin/python examples/training_with_regulariser.py [--out PATH] [--quick]

Trains the same small `ComplexVAE` (n = 2) on the bundled digits twice with the same seed:
once plainly, once with `kahlergeom.vae.GeometricRegulariser` (a penalty on the variance of
log det G of the decoder's Fisher metric over each batch). It then compares, on the codes of
all images, the spread of log det G (its variance) and the final training ELBO. The figure
shows the histograms of log det G and the training curves.
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from _common import digits, parse_args, save, train_vae  # noqa: E402

import kahlergeom as kg  # noqa: E402


def main() -> None:
    args = parse_args("training_with_regulariser", __doc__)
    x, _ = digits(300 if args.quick else None)
    epochs = 1 if args.quick else 20
    reg = kg.vae.GeometricRegulariser(weight=1.0, kind="variance", n_points=32)
    runs = {}
    for label, r in (("plain", None), ("with regulariser", reg)):
        model, history = train_vae(x, 2, epochs, seed=args.seed, regulariser=r)
        z = model.encode(x).mean
        logdet = kg.FisherManifold(model.decoder, n=2).log_volume_density(z)
        elbo = history.elbo[-1]  # last epoch's mean training ELBO
        print(
            f"{label:>17}: var(log det G) = {logdet.var().item():.3f}, mean log det G = "
            f"{logdet.mean().item():.2f}, final training ELBO = {elbo:.1f}"
        )
        runs[label] = (logdet, history)

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, (logdet, history) in runs.items():
        a1.hist(
            logdet.numpy(),
            bins=40,
            alpha=0.6,
            density=True,
            label=f"{label} (var {logdet.var().item():.2f})",
        )
        a2.plot(range(1, len(history.elbo) + 1), history.elbo, "o-", label=label)
    a1.set_xlabel("log det G at the codes of the images")
    a1.set_ylabel("density")
    a1.set_title("spread of the Fisher volume element")
    a1.legend()
    a2.set_xlabel("epoch")
    a2.set_ylabel("training ELBO")
    a2.set_title("training curves")
    a2.legend()
    save(fig, args.out)


if __name__ == "__main__":
    main()
