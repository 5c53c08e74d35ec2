"""The Train widget's checks and job without napari or Qt: painted slices, errors, split, a tiny run."""

import threading

import numpy as np
import pytest

from napari_pixeldrl import _train_job as T
from napari_pixeldrl import _messages as M
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
    base = dict(model_overrides=dict(TINY), epochs=1, batch_size=2, crop=None, augment=False, t_max=2,
                device="cpu", progress=False, threads=1)
    return TrainConfig(**{**base, **kw})


def test_painted_slices_of_a_volume():
    from napari_pixeldrl.training.data.painted import painted_slices

    _, labels = disc_volume(painted=(0, 2, 3))
    z, value = painted_slices(labels)
    assert z == [0, 2, 3] and value == 1
    # several labels: the chosen one decides which slices count
    labels[1, 5:9, 5:9] = 2
    with pytest.raises(InputError, match="several labels"):
        painted_slices(labels)
    assert painted_slices(labels, 2) == ([1], 2)
    with pytest.raises(InputError, match="label 7 is not painted"):
        painted_slices(labels, 7)
    with pytest.raises(InputError, match="nothing is painted"):
        painted_slices(np.zeros((3, 8, 8), np.uint8))
    assert painted_slices(np.pad(np.ones((2, 2), np.uint8), 3)) == ([0], 1)  # a 2D layer is one slice


def test_held_back_split_and_n_shot_by_select_split():
    from napari_pixeldrl.training.data.splits import hold_back, select_split

    for n in range(2, 30):
        part = hold_back(n)
        train, val = part["train"].tolist(), part["val"].tolist()
        assert len(val) >= 1 and len(train) >= 1 and sorted(train + val) == list(range(n))
        assert len(val) == min(n - 1, max(1, round(n * 0.2)))
    assert all((hold_back(10, seed=3)[k] == hold_back(10, seed=3)[k]).all() for k in ("train", "val"))
    one = hold_back(1)
    assert one["train"].tolist() == one["val"].tolist() == [0]
    image, labels = disc_volume(z=6, painted=range(6))
    data = T.layer_training_data(image, labels)
    held = {"split_by": "held_back", "seed": 0}
    assert select_split_slices(data.train) == select_split_slices(select_split(_painted(image, labels), held, "train"))
    with pytest.raises(InputError, match="n-shot asks for 9"):  # refused as the CLI refuses it, not capped
        T.layer_training_data(image, labels, n_shot=9)


def test_painted_layers_are_checked_before_and_read_in_the_job(tmp_path):
    import torch

    torch.set_num_threads(1)
    image, labels = disc_volume(painted=(0, 2, 3))
    painted = T.PaintedLayers(image, labels, image_name="vol", labels_name="paint")
    assert T.check_painted(painted) == ([0, 2, 3], 1)
    with pytest.raises(InputError, match="n-shot asks for 3 training slices but only 2"):
        T.check_painted(painted, n_shot=3)
    with pytest.raises(InputError, match="nothing is painted in layer 'paint'"):
        T.check_painted(T.PaintedLayers(image, np.zeros_like(labels), labels_name="paint"))
    msgs, done = drain(T.train_job(painted, tiny_train_config(), tmp_path / "run"))
    assert isinstance(msgs[0], M.Stage) and "painted" in msgs[0].text
    assert isinstance(done, M.TrainDone) and (done.n_train, done.n_val) == (2, 1)


def _painted(image, labels):
    from napari_pixeldrl.training.data.painted import painted_slice_set

    return painted_slice_set(image, labels)


def select_split_slices(data):
    return list(data.slice_index)


def test_layer_training_data_volume_rgb_and_errors():
    image, labels = disc_volume(z=4, painted=(0, 1, 2, 3))
    data = T.layer_training_data(image, labels)
    assert data.slices == [0, 1, 2, 3] and data.channels == 1
    assert len(data.train) == 3 and len(data.val) == 1
    assert sorted(data.train.slice_index + data.val.slice_index) == [0, 1, 2, 3]
    im, m = data.train.images[0], data.train.masks[0]
    assert im.shape == (1, 64, 64) and im.dtype == np.float32 and 0 <= im.min() and im.max() <= 1
    assert m.dtype == np.uint8 and set(np.unique(m)) == {0, 1}
    data = T.layer_training_data(image, labels, n_shot=1)
    assert len(data.train) == 1 and "N-shot" in data.note
    one = T.layer_training_data(image[0], labels[0])
    assert len(one.train) == len(one.val) == 1 and "itself" in one.note
    rgb = np.repeat((image[..., None] / 200 * 255).clip(0, 255).astype(np.uint8), 3, -1)  # (Z, H, W, 3)
    data = T.layer_training_data(rgb, labels, rgb=True)
    assert data.channels == 3 and data.train.images[0].shape == (3, 64, 64)
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
    assert isinstance(done, M.TrainDone), done
    assert done.reason == "done" and done.epochs_done == 1 and done.n_train == 2 and done.n_val == 1
    assert (tmp_path / "run" / BEST).exists() and (tmp_path / "run" / LAST).exists()
    assert isinstance(done.loaded, LoadedModel)
    kinds = [type(m).__name__ for m in msgs]
    assert kinds[:2] == ["TrainStarted", "StartEvent"] and "EpisodeEvent" in kinds and "EpochEvent" in kinds
    assert kinds[-2:] == ["EndEvent", "Stage"]
    # fine-tune from the in-memory model (no file): handed to the trainer as it is
    done.loaded.path = None
    _, again = drain(T.train_job(data, tiny_train_config(), tmp_path / "run2", start=done.loaded))
    assert isinstance(again, M.TrainDone) and not (tmp_path / "run2" / "init.safetensors").exists()
    # cancelled before the first episode: still a usable best checkpoint
    ev = threading.Event()
    ev.set()
    _, cancelled = drain(T.train_job(data, tiny_train_config(), tmp_path / "run3", cancel=ev))
    assert cancelled.reason == "cancelled" and cancelled.best_checkpoint.exists()
    bad = tmp_path / "foreign.safetensors"
    bad.write_bytes(b"\x80\x04pickle")
    _, failed = drain(T.train_job(data, tiny_train_config(), tmp_path / "run4", start=bad))
    assert isinstance(failed, M.Failed) and failed.kind == "checkpoint" and "saved by napari-pixeldrl" in failed.message


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
    assert isinstance(done, M.TrainDone), done
    assert done.n_val == len(cli_val) and done.n_train == 2
    assert isinstance(msgs[0], M.Stage) and "dataset" in msgs[0].text
    _, failed = drain(T.train_job(None, tiny_train_config(), tmp_path / "run3", dataset=("folder", str(folder), None),
                                  n_shot=len(cli_train) + 1))
    assert isinstance(failed, M.Failed) and "n-shot asks for" in failed.message
    _, failed = drain(T.train_job(None, tiny_train_config(), tmp_path / "run2", dataset=("folder", str(tmp_path / "nope"), None)))
    assert isinstance(failed, M.Failed) and "not a folder" in failed.message


def test_train_job_trains_in_the_callers_thread_and_a_closed_job_frees_the_folder(tmp_path, monkeypatch):
    """No helper thread: the trainer runs where the job is drained (napari's worker thread);
    closing the job early ends the run and releases its folder."""
    import torch

    import napari_pixeldrl.training.trainer as TR

    torch.set_num_threads(1)
    seen_threads = []
    run = TR.Trainer.run

    def spy(self, *a, **k):
        seen_threads.append(threading.current_thread())
        return (yield from run(self, *a, **k))

    monkeypatch.setattr(TR.Trainer, "run", spy)
    image, labels = disc_volume(painted=(0, 2))
    msgs, done = drain(T.train_job(T.layer_training_data(image, labels), tiny_train_config(), tmp_path / "run"))
    assert isinstance(done, M.TrainDone) and seen_threads == [threading.current_thread()]
    job = T.train_job(T.layer_training_data(image, labels), tiny_train_config(epochs=5), tmp_path / "run2")
    while type(next(job)).__name__ != "EpisodeEvent":
        pass
    job.close()
    _, again = drain(T.train_job(T.layer_training_data(image, labels), tiny_train_config(), tmp_path / "run2"))
    assert isinstance(again, M.TrainDone), again
