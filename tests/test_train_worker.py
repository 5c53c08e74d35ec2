"""The Train widget's checks and job without napari or Qt: painted slices, errors, split, a tiny run."""

import threading

import numpy as np
import pytest

from napari_pixeldrl import _train_worker as T
from napari_pixeldrl import _workers as W
from napari_pixeldrl.core.errors import CheckpointError, InputError
from napari_pixeldrl.model.checkpoint import LoadedModel, save_checkpoint
from napari_pixeldrl.model.network import build_model
from napari_pixeldrl.training.run_folder import BEST, LAST
from napari_pixeldrl.training.train_config import TrainConfig

from _synthetic import TINY
from _helpers import drain


def disc_volume(z=4, size=64, painted=(0, 2, 3), label=1):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    image = np.zeros((z, size, size), np.float32)
    labels = np.zeros((z, size, size), np.uint8)
    for i in range(z):
        disc = (yy - 28 - 2 * i) ** 2 + (xx - 34) ** 2 < (10 + i) ** 2
        image[i] = rng.normal(40, 5, (size, size)) + 120 * disc
        if i in painted:
            labels[i][disc] = label
    return image, labels


def tiny_train_config(**kw):
    return TrainConfig(model_overrides=dict(TINY), epochs=1, batch_size=2, crop=None, augment=False, t_max=2,
                       device="cpu", progress=False, threads=1, **kw)


def test_painted_slices_of_a_volume():
    _, labels = disc_volume(painted=(0, 2, 3))
    z, value = T.painted_slices(labels)
    assert z == [0, 2, 3] and value == 1
    # several labels: the chosen one decides which slices count
    labels[1, 5:9, 5:9] = 2
    with pytest.raises(InputError, match="several labels"):
        T.painted_slices(labels)
    assert T.painted_slices(labels, 2) == ([1], 2)
    with pytest.raises(InputError, match="label 7 is not painted"):
        T.painted_slices(labels, 7)
    with pytest.raises(InputError, match="nothing is painted"):
        T.painted_slices(np.zeros((3, 8, 8), np.uint8))
    assert T.painted_slices(np.pad(np.ones((2, 2), np.uint8), 3)) == ([0], 1)  # a 2D layer is one slice


def test_held_back_split():
    for n in range(2, 30):
        train, val, note = T.held_back_split(n)
        assert len(val) >= 1 and len(train) >= 1 and sorted(train + val) == list(range(n))
        assert len(val) == min(n - 1, max(1, round(n * 0.2)))
        assert "held back" in note
    assert T.held_back_split(10, seed=3) == T.held_back_split(10, seed=3)
    train, val, note = T.held_back_split(1)
    assert train == val == [0] and "training slice itself" in note
    assert T.pick_n_shot([1, 4, 6, 8], 2, seed=0) == T.pick_n_shot([1, 4, 6, 8], 2, seed=0)
    assert len(T.pick_n_shot([1, 4, 6, 8], 2)) == 2 and T.pick_n_shot([1, 4], None) == [1, 4]
    assert set(T.pick_n_shot([1, 4, 6, 8], 3)) <= {1, 4, 6, 8}
    with pytest.raises(InputError, match="n-shot asks for 5"):  # refused as the CLI refuses it, not capped
        T.pick_n_shot([1, 4, 6, 8], 5)


def test_layer_training_data_volume_rgb_and_errors():
    image, labels = disc_volume(z=4, painted=(0, 1, 2, 3))
    data = T.layer_training_data(image, labels)
    assert data.slices == [0, 1, 2, 3] and data.channels == 1
    assert len(data.train[0]) == 3 and len(data.val[0]) == 1
    im, m = data.train[0][0], data.train[1][0]
    assert im.shape == (1, 64, 64) and im.dtype == np.float32 and 0 <= im.min() and im.max() <= 1
    assert m.dtype == np.uint8 and set(np.unique(m)) == {0, 1}
    data = T.layer_training_data(image, labels, n_shot=1)
    assert len(data.train[0]) == 1 and "N-shot" in data.note
    one = T.layer_training_data(image[0], labels[0])
    assert len(one.train[0]) == len(one.val[0]) == 1 and "itself" in one.note
    rgb = np.repeat((image[..., None] / 200 * 255).clip(0, 255).astype(np.uint8), 3, -1)  # (Z, H, W, 3)
    data = T.layer_training_data(rgb, labels, rgb=True)
    assert data.channels == 3 and data.train[0][0].shape == (3, 64, 64)
    with pytest.raises(InputError, match="nothing is painted"):
        T.layer_training_data(image, np.zeros_like(labels))
    with pytest.raises(InputError, match="has shape .* but image"):
        T.layer_training_data(image, labels[:, :32])
    with pytest.raises(InputError, match="2D image or a 3D volume"):
        T.layer_training_data(np.zeros((2, 4, 64, 64), np.float32), np.zeros((2, 4, 64, 64), np.uint8))


def test_channel_and_checkpoint_checks(tmp_path, tiny_config):
    with pytest.raises(InputError, match="one \\(gray\\) channel but the image is RGB"):
        T.check_channels(3, 1)
    with pytest.raises(InputError, match="RGB\\) but the image is gray"):
        T.check_channels(1, 3)
    T.check_channels(1, 1)
    T.check_channels(3, None)
    cfg = tiny_config(in_channels=3)
    path = save_checkpoint(tmp_path / "rgb.safetensors", build_model(cfg), cfg)
    assert T.start_channels(path) == 3 and T.start_channels(None) is None
    assert T.start_channels(LoadedModel(build_model(cfg), cfg)) == 3
    bad = tmp_path / "foreign.safetensors"
    bad.write_bytes(b"PK\x03\x04 a torch zip")
    with pytest.raises(CheckpointError, match="saved by napari-pixeldrl"):
        T.start_channels(bad)
    with pytest.raises(InputError, match="not a folder"):
        T.check_dataset("folder", tmp_path / "nope")
    with pytest.raises(InputError, match="dataset kind"):
        T.check_dataset("zip", tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "training_state.safetensors").write_bytes(b"x")
    with pytest.raises(InputError, match="already holds"):
        T.check_out_dir(tmp_path / "run")


def test_default_run_dir_under_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PIXELDRL_CACHE", str(tmp_path))
    out = T.default_run_dir()
    assert out.parent == tmp_path / "runs"


def test_train_job_plain_call(tmp_path):
    """Drained in a plain loop: typed messages, best model loaded; a foreign start fails cleanly."""
    import torch

    torch.set_num_threads(1)
    image, labels = disc_volume(painted=(0, 2, 3))
    data = T.layer_training_data(image, labels)
    msgs, done = drain(T.train_job(data, tiny_train_config(), tmp_path / "run"))
    assert isinstance(done, T.TrainDone), done
    assert done.reason == "done" and done.epochs_done == 1 and done.n_train == 2 and done.n_val == 1
    assert (tmp_path / "run" / BEST).exists() and (tmp_path / "run" / LAST).exists()
    assert isinstance(done.loaded, LoadedModel)
    kinds = [type(m).__name__ for m in msgs]
    assert kinds[0] == "TrainStarted" and "TrainEpisode" in kinds and "TrainEpoch" in kinds
    # fine-tune from the in-memory model (no file): it is saved into the run folder first
    done.loaded.path = None
    _, again = drain(T.train_job(data, tiny_train_config(), tmp_path / "run2", start=done.loaded))
    assert isinstance(again, T.TrainDone) and (tmp_path / "run2" / "init.safetensors").exists()
    # cancelled before the first episode: still a usable best checkpoint
    ev = threading.Event()
    ev.set()
    _, cancelled = drain(T.train_job(data, tiny_train_config(), tmp_path / "run3", cancel=ev))
    assert cancelled.reason == "cancelled" and cancelled.best_checkpoint.exists()
    bad = tmp_path / "foreign.safetensors"
    bad.write_bytes(b"\x80\x04pickle")
    _, failed = drain(T.train_job(data, tiny_train_config(), tmp_path / "run4", start=bad))
    assert isinstance(failed, W.Failed) and failed.kind == "checkpoint" and "saved by napari-pixeldrl" in failed.message


def test_train_job_from_a_dataset_folder(tmp_path):
    """kind 'folder' (X.png + X_mask.png) loaded in the job and split as the CLI splits it:
    by patient (p3__0 and p3__1 are one patient), N-shot from the training part, refused when larger."""
    import imageio.v3 as iio
    import torch

    from napari_pixeldrl.training.data import load_dataset
    from napari_pixeldrl.training.data.splits import select_split

    torch.set_num_threads(1)
    image, labels = disc_volume(z=10, painted=range(10))
    folder = tmp_path / "data"
    folder.mkdir()
    for i in range(10):
        name = f"p{i // 2}__{i % 2}"  # five patients of two slices each
        iio.imwrite(folder / f"{name}.png", (image[i] / image[i].max() * 255).astype(np.uint8))
        iio.imwrite(folder / f"{name}_mask.png", labels[i] * 255)
    data = load_dataset("folder", folder)
    cli = {"split_by": "patient", "seed": 0}
    cli_train, cli_val = select_split(data, cli, "train"), select_split(data, cli, "val")
    assert not set(cli_train.patients) & set(cli_val.patients)
    msgs, done = drain(T.train_job(None, tiny_train_config(), tmp_path / "run", dataset=("folder", str(folder), None), n_shot=2))
    assert isinstance(done, T.TrainDone), done
    assert done.n_val == len(cli_val) and done.n_train == 2
    assert isinstance(msgs[0], W.Stage) and "dataset" in msgs[0].text
    _, failed = drain(T.train_job(None, tiny_train_config(), tmp_path / "run3", dataset=("folder", str(folder), None),
                                  n_shot=len(cli_train) + 1))
    assert isinstance(failed, W.Failed) and "n-shot asks for" in failed.message
    _, failed = drain(T.train_job(None, tiny_train_config(), tmp_path / "run2", dataset=("folder", str(tmp_path / "nope"), None)))
    assert isinstance(failed, W.Failed) and "not a folder" in failed.message


def test_train_job_inline_without_threads(tmp_path, monkeypatch):
    """PIXELDRL_TRAIN_INLINE=1: fit runs in the caller's thread; same messages, after the run."""
    import torch

    torch.set_num_threads(1)
    monkeypatch.setenv("PIXELDRL_TRAIN_INLINE", "1")
    seen_threads = []
    import napari_pixeldrl.training.trainer as TR

    fit = TR.Trainer.fit
    monkeypatch.setattr(TR.Trainer, "fit", lambda self, *a, **k: (seen_threads.append(threading.current_thread()), fit(self, *a, **k))[1])
    image, labels = disc_volume(painted=(0, 2))
    msgs, done = drain(T.train_job(T.layer_training_data(image, labels), tiny_train_config(), tmp_path / "run"))
    assert isinstance(done, T.TrainDone) and seen_threads == [threading.current_thread()]
    assert {type(m).__name__ for m in msgs} >= {"TrainStarted", "TrainEpisode", "TrainEpoch"}
