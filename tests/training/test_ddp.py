"""DistributedDataParallel under torchrun: 2 CPU processes, gloo backend, tiny settings."""

import subprocess
import sys
from pathlib import Path

from napari_pixeldrl.model.checkpoint import load_checkpoint

HERE = Path(__file__).resolve().parents[1]  # tests/, where the helper modules are
TRANSIENT = ("Address already in use", "EADDRINUSE", "Connection refused", "Connection reset by peer",
             "Connection closed by peer", "DistNetworkError", "RendezvousConnectionError")

# The start of every script: a tiny trainer on synthetic discs, in the run folder argv[1].
SETUP = """
import sys
sys.path.insert(0, {tests!r})
import torch
from _synthetic import TINY, discs
from napari_pixeldrl.training.train_config import TrainConfig
from napari_pixeldrl.training.trainer import Trainer
cfg = TrainConfig(preset="lite", model_overrides=dict(TINY), epochs=2, crop=None, t_max=2, progress=False, threads=1, device="cpu")
t = Trainer(cfg, discs(8), discs(2, 1), sys.argv[1])
"""

# The end of every script: free the trainer (its network, optimiser and any DDP state) before
# the process group goes, as `pixeldrl train` does: C++ objects that outlive it can abort the
# process at exit.
LEAVE = """
from napari_pixeldrl.training.trainer import leave_process_group
del t
leave_process_group()
"""


def torchrun(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """Two CPU processes under torchrun; retried, as torch's own distributed tests do
    (retry_on_connect_failures), when a port was taken or a connection dropped while they met:
    that is the machine's doing, not the trainer's."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    for attempt in range(3):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if done.returncode == 0 or not any(m in done.stderr for m in TRANSIENT):
            break
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def run_script(tmp_path, source: str) -> tuple[Path, list[str]]:
    """Run a SETUP ... LEAVE script under torchrun with its run folder in tmp_path; the run
    folder and the line each rank wrote (rank 0 first)."""
    script = tmp_path / "ddp.py"
    script.write_text(source.format(tests=str(HERE)))
    out = tmp_path / "run"
    torchrun(str(script), str(out))
    return out, [(tmp_path / f"run.rank{rank}").read_text() for rank in (0, 1)]


SCRIPT = SETUP + """
r = t.fit()
# the processes hold the same weights after the synchronised updates
w = t.net.policy.out.weight.detach().clone()
ws = [torch.zeros_like(w) for _ in range(t.world_size)]
torch.distributed.all_gather(ws, w)
# One file per rank: two processes printing to one pipe interleave their characters.
line = "RANK %d WORLD %d SAME %s %s %d" % (t.rank, t.world_size, all(torch.equal(ws[0], x) for x in ws), r.reason, r.epochs_done)
open(sys.argv[1] + ".rank%d" % t.rank, "w").write(line)
del r
""" + LEAVE


def test_torchrun_two_cpu_processes(tmp_path):
    out, lines = run_script(tmp_path, SCRIPT)
    assert lines == [f"RANK {rank} WORLD 2 SAME True done 2" for rank in (0, 1)]
    load_checkpoint(out / "checkpoint_best.safetensors")


NAN_ON_RANK_1 = SETUP + """
import dataclasses
import napari_pixeldrl.training.pa3c as P
from napari_pixeldrl.training.events import TrainingDiverged
forward = P.PA3CObjective.forward
def nan_on_rank_1(self, *a, **k):
    loss, stats = forward(self, *a, **k)
    if torch.distributed.get_rank() == 1:
        return loss * float("nan"), dataclasses.replace(stats, loss=float("nan"))
    return loss, stats
P.PA3CObjective.forward = nan_on_rank_1  # before the first episode
try:
    t.fit()
    line = "NOT STOPPED"
except TrainingDiverged as err:
    line = "STOPPED " + str(err)[:60]
open(sys.argv[1] + ".rank%d" % t.rank, "w").write(line)
""" + LEAVE


def test_a_loss_that_is_nan_on_one_process_stops_both(tmp_path):
    """Not one process stopped and the other waiting forever in the gradients' all-reduce."""
    _, lines = run_script(tmp_path, NAN_ON_RANK_1)
    for line in lines:
        assert line.startswith("STOPPED training diverged at epoch 1, episode 1"), line


def test_the_train_command_under_torchrun_ends_cleanly(tmp_path):
    """pixeldrl train's own module under torchrun: both processes exit 0 and the run folder holds a model."""
    import imageio.v3 as iio
    import numpy as np

    folder = tmp_path / "data"
    folder.mkdir()
    yy, xx = np.mgrid[:32, :32]
    for i in range(6):  # three patients of two slices
        disc = (yy - 16) ** 2 + (xx - 14 - i) ** 2 < (6 + i) ** 2
        iio.imwrite(folder / f"p{i // 2}__{i % 2}.png", (40 + 150 * disc).astype(np.uint8))
        iio.imwrite(folder / f"p{i // 2}__{i % 2}_mask.png", (255 * disc).astype(np.uint8))
    out = tmp_path / "run"
    done = torchrun("-m", "napari_pixeldrl.training.cli_train", "train", "--dataset", "folder", "--data", str(folder),
                    "--out", str(out), "--epochs", "1", "--t-max", "2", "--crop", "0", "--threads", "1",
                    "--device", "cpu", "--no-progress", "--split-by", "slice", timeout=300)
    assert "terminate called" not in done.stderr
    load_checkpoint(out / "checkpoint_best.safetensors")
