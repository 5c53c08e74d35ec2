"""The widget jobs without napari: input mapping, action codes, typed outcomes."""

import threading

import numpy as np
import pytest

from napari_pixeldrl import _messages as M
from napari_pixeldrl import _colors as C
from napari_pixeldrl import _segment_job as S
from napari_pixeldrl import _evaluate_job as E
from napari_pixeldrl.core.errors import InputError
from napari_pixeldrl.model.checkpoint import save_checkpoint
from napari_pixeldrl.model.episode import KEPT, ZEROED, action_map
from napari_pixeldrl.model.network import build_model
from _helpers import drain


@pytest.fixture
def ckpt(tmp_path, tiny_config):
    def make(in_channels=1):
        cfg = tiny_config(in_channels=in_channels)
        return save_checkpoint(tmp_path / f"tiny{in_channels}.safetensors", build_model(cfg), cfg)

    return make


def test_prepare_image_maps_rgb_and_refuses_mismatches():
    rgb = np.zeros((4, 32, 32, 3), np.uint8)
    arr, axis = S.prepare_image(rgb, rgb=True, in_channels=3)
    assert axis == 3 and arr.shape == rgb.shape
    arr, axis = S.prepare_image(np.zeros((32, 32, 4)), rgb=True, in_channels=3)
    assert arr.shape == (32, 32, 3) and axis == 2
    with pytest.raises(InputError, match="one \\(gray\\) channel.*RGB"):
        S.prepare_image(rgb, rgb=True, in_channels=1)
    with pytest.raises(InputError, match="gray"):
        S.prepare_image(np.zeros((32, 32)), rgb=False, in_channels=3)
    with pytest.raises(InputError, match="4 dimensions"):
        S.prepare_image(np.zeros((2, 3, 32, 32)), rgb=False, in_channels=1)


def test_action_map():
    # one pixel row of 3: pixel 0 zeroed at step 1, pixel 1 at step 2, pixel 2 always kept
    masks = np.array([[0, 1, 1], [0, 0, 1], [0, 0, 1]], np.uint8)
    k, z = KEPT, ZEROED
    assert action_map(masks).tolist() == [[z, k, k], [0, z, k], [0, 0, k]]
    # from a start mask m(0) that excludes pixel 0: no agent acts there
    assert action_map(masks, start=np.array([0, 1, 1])).tolist() == [[0, k, k], [0, z, k], [0, 0, k]]
    steps, actions = S.step_views(masks, np.array([0, 1, 1]))
    assert steps.tolist() == [[0, 1, 1], *masks.tolist()]
    assert actions.tolist() == [[0, 0, 0], [0, k, k], [0, z, k], [0, 0, k]]
    steps, actions = S.step_views(masks)  # from all ones: step 1's zeroed pixels get the faint code
    assert actions[1].tolist() == [C.STEP1_ZEROED, k, k]
    assert set(C.ACTIONS) == {0, KEPT, ZEROED, C.STEP1_ZEROED}


def test_segment_job_outcomes(ckpt, tmp_path):
    path = ckpt(1)
    img = np.random.default_rng(0).normal(size=(3, 24, 24)).astype(np.float32)
    msgs, done = drain(S.segment_job(img, rgb=False, model_source=path, t_max=3, batch_size=2))
    assert isinstance(done, M.SegmentDone)
    assert done.mask.shape == (3, 24, 24) and done.steps.shape == (4, 3, 24, 24)
    assert done.actions.shape == done.steps.shape and done.value.shape == (3, 24, 24)
    assert [m.done for m in msgs if isinstance(m, M.SegmentProgress)] == [0, 2, 3]
    _, failed = drain(S.segment_job(img, rgb=False, model_source=path, postprocess="biggest"))
    assert isinstance(failed, M.Failed) and "unknown post-processing" in failed.message
    # RGB into a gray model: a Failed message that says what to do, no exception
    _, failed = drain(S.segment_job(np.zeros((24, 24, 3), np.uint8), rgb=True, model_source=path))
    assert isinstance(failed, M.Failed) and "RGB" in failed.message
    # a file that is not ours
    bad = tmp_path / "foreign.safetensors"
    bad.write_bytes(b"\x80\x04not a checkpoint")
    _, failed = drain(S.segment_job(img, rgb=False, model_source=bad))
    assert failed.kind == "checkpoint" and "saved by napari-pixeldrl" in failed.message
    # cancel before the first batch
    ev = threading.Event()
    ev.set()
    _, out = drain(S.segment_job(img, rgb=False, model_source=path, cancel=ev))
    assert isinstance(out, M.Cancelled)


def test_segment_job_postprocess_changes_the_final_mask_only():
    from _synthetic import FixedLogits  # a stand-in U-Net: two blobs, 9 and 37 pixels (46 with a touching pixel)

    from napari_pixeldrl.model.checkpoint import LoadedModel
    from napari_pixeldrl.model.config import preset_config

    cfg = preset_config("unet")
    img = np.random.default_rng(0).normal(size=(2, 24, 24)).astype(np.float32)
    runs = {p: drain(S.segment_job(img, rgb=False, model_source=LoadedModel(FixedLogits(), cfg), postprocess=p))[1]
            for p in ("auto", "largest-component")}
    assert runs["auto"].mask.sum() == 2 * 46 and runs["largest-component"].mask.sum() == 2 * 37
    assert (runs["auto"].steps == runs["largest-component"].steps).all()
    stored = LoadedModel(FixedLogits(), cfg.replace(postprocess="largest-component"))
    assert drain(S.segment_job(img, rgb=False, model_source=stored))[1].mask.sum() == 2 * 37  # "auto": the model's own
    assert drain(S.segment_job(img, rgb=False, model_source=stored, postprocess="none"))[1].mask.sum() == 2 * 46


def test_segment_job_keep_threshold_moves_the_cut(ckpt):
    """FixedLogits' logits are +-5: pi(keep) 0.993 on its blobs, 0.007 elsewhere."""
    from _synthetic import FixedLogits

    from napari_pixeldrl.model.checkpoint import LoadedModel
    from napari_pixeldrl.model.config import preset_config

    model = LoadedModel(FixedLogits(), preset_config("unet"))
    img = np.random.default_rng(0).normal(size=(2, 24, 24)).astype(np.float32)
    sums = {p: drain(S.segment_job(img, rgb=False, model_source=model, keep_threshold=p))[1].mask.sum()
            for p in ("auto", 0.995, 0.005)}
    assert sums == {"auto": 2 * 46, 0.995: 0, 0.005: 2 * 24 * 24}
    _, failed = drain(S.segment_job(img, rgb=False, model_source=ckpt(1), keep_threshold=1.5))
    assert isinstance(failed, M.Failed) and "between 0 and 1" in failed.message


def test_segment_job_window_option(ckpt):
    path = ckpt(1)
    img = np.random.default_rng(0).normal(size=(2, 40, 40)).astype(np.float32)
    _, whole = drain(S.segment_job(img, rgb=False, model_source=path, t_max=3, window=0))
    _, tiled = drain(S.segment_job(img, rgb=False, model_source=path, t_max=3, window=16))
    assert isinstance(tiled, M.SegmentDone) and tiled.mask.shape == whole.mask.shape == (2, 40, 40)
    assert (tiled.steps[1:] <= tiled.steps[:-1]).all()
    _, failed = drain(S.segment_job(img, rgb=False, model_source=path, window=20))
    assert isinstance(failed, M.Failed) and "multiple of 16" in failed.message


def test_evaluate_job():
    gt = np.zeros((2, 16, 16), np.uint8)
    gt[:, 4:10, 4:10] = 1
    _, done = drain(E.evaluate_job(gt, gt, spacing=(2.0, 1.0, 1.0)))
    assert [r[0] for r in done.rows] == ["slice 0", "slice 1", "mean of slices", "volume"]
    assert done.rows[-1][1]["dice"] == pytest.approx(1.0)
    _, failed = drain(E.evaluate_job(gt, gt[0]))
    assert isinstance(failed, M.Failed) and "same image" in failed.message


def test_evaluate_job_refuses_several_labels_unless_one_is_chosen():
    gt = np.zeros((16, 16), np.uint8)
    gt[2:8, 2:8] = 1
    gt[10:14, 10:14] = 2
    pred = (gt == 2).astype(np.uint8)  # a binary prediction of object 2
    _, failed = drain(E.evaluate_job(pred, gt, gt_name="truth"))
    assert isinstance(failed, M.Failed) and "several object labels" in failed.message and "'truth'" in failed.message
    _, done = drain(E.evaluate_job(pred, gt, label=2))
    assert done.rows[0][1]["dice"] == pytest.approx(1.0)
    _, done = drain(E.evaluate_job(pred, gt, label=1))
    assert done.rows[0][1]["dice"] < 0.01


def test_segment_job_imports_napari_label_colours_off_the_gui_thread(ckpt):
    """napari's first Labels layer imports skimage's colour conversions (0.1-0.2 s); the job
    does it in the worker. A fresh interpreter, since this one may have them loaded."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from napari_pixeldrl import _segment_job as S\n"
        "assert 'skimage.color.colorconv' not in sys.modules\n"
        "gen = S.segment_job(np.random.default_rng(0).normal(size=(24, 24)).astype(np.float32), rgb=False, model_source=sys.argv[1], t_max=1)\n"
        "try:\n    while True: next(gen)\nexcept StopIteration as stop: assert type(stop.value).__name__ == 'SegmentDone', stop.value\n"
        "from napari.utils.colormaps.colormap_utils import _color_random\n"
        "import inspect\n"
        "assert 'skimage.color' in inspect.getsource(_color_random), 'napari no longer imports it there'\n"
        "print('colorconv' if 'skimage.color.colorconv' in sys.modules else 'missing')\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(ckpt(1))], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "colorconv"


def test_segment_job_with_a_box_model_needs_a_start_layer(tmp_path, tiny_config):
    cfg = tiny_config(box_zoom=16)
    path = save_checkpoint(tmp_path / "boxed.safetensors", build_model(cfg), cfg)
    img = np.random.default_rng(0).normal(size=(24, 24)).astype(np.float32)
    _, failed = drain(S.segment_job(img, rgb=False, model_source=path, t_max=2))
    assert isinstance(failed, M.Failed) and "segments inside a box" in failed.message and "start layer" in failed.message
    _, empty = drain(S.segment_job(img, rgb=False, model_source=path, t_max=2, start_mask=np.zeros((24, 24), np.uint8)))
    assert "start layer is empty" in empty.message and "whole image" not in empty.message  # it cannot start there
    start = np.zeros((24, 24), np.uint8)
    start[4:14, 6:20] = 1
    _, done = drain(S.segment_job(img, rgb=False, model_source=path, t_max=2, start_mask=start))
    assert isinstance(done, M.SegmentDone) and not done.mask[start == 0].any()
