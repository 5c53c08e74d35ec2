"""How hard each PA3C term pulls the shared layers: the refining arm against its one-step control.

    python benchmarks/term_gradients.py --chain heart-valfold0 --arms refine control

For each arm (a stage of a chain, its weights at the stop, ``checkpoint_last``) the script runs
the arm's own loss (its run's config.json) on the same few training batches and the same sampled
episodes, once per term switched on alone, and prints the median norm of each term's gradient on
the shared layers (extractor and self-attention): policy gradient, value (c_v included),
supervised (lambda included) and entropy (beta included). A term's gradient is the difference of
two backward passes over the same episode (the policy term is in every pass), so the numbers are
exact, not estimates. Diagnostics only: nothing is trained, the validation and test splits are not
read.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from _runs import ROOT, run_train_config, training_batches
from chain import CHAINS
from napari_pixeldrl.model.checkpoint import load_checkpoint
from napari_pixeldrl.training.pa3c import pa3c_loss

SHARED = ("extractor.", "sam.")


def shared_gradient(net, image, truth, options: dict, seed: int) -> torch.Tensor:
    net.zero_grad(set_to_none=True)
    loss, _ = pa3c_loss(net, image, truth, generator=torch.Generator().manual_seed(seed), **options)
    loss.backward()
    return torch.cat([p.grad.flatten() for n, p in net.named_parameters() if n.startswith(SHARED) and p.grad is not None])


def term_norms(run, batches) -> dict[str, float]:
    train = run_train_config(run)
    loaded = load_checkpoint(run / "checkpoint_last.safetensors")
    net = loaded.model.train()
    full = dict(train.pa3c_options(), t_max=train.t_max, gamma=loaded.config.gamma)
    alone = dict(full, value_weight=0.0, supervised_weight=0.0, entropy_beta=0.0)
    terms = {"policy": {}, "value": {"value_weight": full["value_weight"]},
             "supervised": {"supervised_weight": full["supervised_weight"]}, "entropy": {"entropy_beta": full["entropy_beta"]}}
    norms: dict[str, list[float]] = {t: [] for t in terms}
    for i, (x, y) in enumerate(batches):
        x, y = torch.from_numpy(x), torch.from_numpy(y)
        policy = shared_gradient(net, x, y, alone, i)
        for term, on in terms.items():
            g = policy if not on else shared_gradient(net, x, y, dict(alone, **on), i) - policy
            norms[term].append(float(g.norm()))
    return {t: statistics.median(v) for t, v in norms.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chain", required=True, choices=sorted(CHAINS))
    parser.add_argument("--arms", nargs="+", default=["refine", "control"])
    parser.add_argument("--batches", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(1)
    chain = CHAINS[args.chain]
    base = ROOT / "runs" / f"chain-{args.chain}"
    batches = training_batches(chain.dataset, run_train_config(base / args.arms[0]), args.batches)
    print(f"{args.chain}: median gradient norm on the shared layers over {len(batches)} training batches of 2")
    for arm in args.arms:
        norms = term_norms(base / arm, batches)
        rl = norms["policy"] + norms["value"] + norms["entropy"]
        print(f"{arm}: " + ", ".join(f"{t} {v:.4f}" for t, v in norms.items())
              + f"; (policy + value + entropy) / supervised {rl / norms['supervised']:.3f}")


if __name__ == "__main__":
    main()
