"""How hard each PA3C term pulls the shared layers: the refining arm against its one-step control.

    python benchmarks/term_gradients.py --chain heart-valfold0 --arms refine control

For each arm (a stage of a chain, its weights at the stop, ``checkpoint_last``) the script runs
the arm's own loss (its run's config.json) on the same few training batches and the same sampled
episodes, once per term switched on alone, and prints the median norm of each term's gradient on
the shared layers (extractor and self-attention): policy gradient, value (c_v included),
supervised (lambda included) and entropy (beta included). A term's gradient is the difference of
two backward passes over the same episode (the policy term is in every pass), so the numbers are
exact, not estimates. Writes benchmarks/results/term_gradients_CHAIN.md. Diagnostics only: nothing
is trained, the validation and test splits are not read.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys

import torch

from _runs import ROOT, run_train_config, training_batches, write_results
from chain import CHAINS
from napari_pixeldrl.model.checkpoint import load_checkpoint
from napari_pixeldrl.training.bench import machine
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
    parser.add_argument("--name", default=None, help="benchmarks/results/term_gradients_NAME.md (default: the chain)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    chain = CHAINS[args.chain]
    base = ROOT / "runs" / f"chain-{args.chain}"
    batches = training_batches(chain.dataset, run_train_config(base / args.arms[0]), args.batches)
    arms = {}
    for arm in args.arms:
        norms = term_norms(base / arm, batches)
        rl = norms["policy"] + norms["value"] + norms["entropy"]
        # An arm without a supervised term (the paper's loss) has no ratio.
        arms[arm] = {**norms, "rl_over_supervised": rl / norms["supervised"] if norms["supervised"] else float("nan")}
    m = machine()
    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "command": "python benchmarks/term_gradients.py " + " ".join(sys.argv[1:]), "machine": m,
              "chain": args.chain, "batches": len(batches), "arms": arms}
    lines = [f"# How hard each PA3C term pulls the shared layers: {args.chain}", "",
             f"Command: `{result['command']}`  ", f"Date: {result['date']}; machine: {m['cpu']}, {m['cores']} cores, "
             f"torch {m['torch']}. Median gradient norm on the extractor and self-attention over {len(batches)} training "
             "batches of 2, each arm's own loss at its last weights, one term at a time (exact: a difference of two "
             "backward passes over the same episodes). Diagnostics only.", "",
             "| arm | policy | value | supervised | entropy | (policy + value + entropy) / supervised |",
             "| --- | --- | --- | --- | --- | --- |",
             *(f"| {arm} | {n['policy']:.4f} | {n['value']:.4f} | {n['supervised']:.4f} | {n['entropy']:.4f} | "
               f"{n['rl_over_supervised']:.3f} |" for arm, n in arms.items()), ""]
    write_results(f"term_gradients_{args.name or args.chain}", result, lines)


if __name__ == "__main__":
    main()
