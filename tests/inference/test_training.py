import pytest
import torch
import torch.nn.functional as F

from inference.checkpoints import apply_weights, load_checkpoint
from inference.nets import NetOutput, build_model
from inference.preprocessing import Preprocessing
from inference.training import (
    deep_supervision_loss,
    set_trainable,
    step_learning_rates,
    train,
    unfreeze_schedule,
)
from tests.inference.factories import shape_image


def test_unfreeze_schedule_goes_from_head_and_last_stage_to_everything():
    assert unfreeze_schedule(9, 4) == [2, 4, 7, 9]
    assert unfreeze_schedule(9, 2) == [2, 9]
    assert unfreeze_schedule(6, 1) == [6]
    with pytest.raises(ValueError):
        unfreeze_schedule(6, 0)


def test_step_learning_rates_fall_geometrically_from_1e3_to_1e5():
    assert step_learning_rates(3) == pytest.approx([1e-3, 1e-4, 1e-5])
    assert step_learning_rates(5) == pytest.approx([1e-3, 10**-3.5, 1e-4, 10**-4.5, 1e-5])
    assert step_learning_rates(1) == [1e-3]


def test_set_trainable_freezes_the_first_stages(model_for):
    model = build_model("efficientnet_b4_aux", num_classes=3)
    params = set_trainable(model.train(), 2)
    stages = model.stage_modules()
    trainable = {id(p) for p in params}
    for modules in stages[:-2]:
        for module in modules:
            assert not module.training  # BatchNorm statistics stay as loaded
            assert all(not p.requires_grad and id(p) not in trainable for p in module.parameters())
    for modules in stages[-2:]:
        for module in modules:
            assert module.training
            assert all(p.requires_grad and id(p) in trainable for p in module.parameters())
    assert model.aux_heads[0].fc.weight.requires_grad  # every head trains from step 1

    params = set_trainable(model.train(), 3, freeze_bn_stats=False)
    assert all(m.training for m in model.modules())  # random init: batch statistics
    assert {id(p) for p in params} == {id(p) for p in model.parameters() if p.requires_grad}
    assert not model.backbone.conv_stem.weight.requires_grad

    set_trainable(model.train(), len(stages))
    assert all(p.requires_grad for p in model.parameters())


def test_deep_supervision_loss_sums_cross_entropy_over_heads():
    target = torch.tensor([0, 1])
    heads = [torch.randn(2, 3, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    out = NetOutput(sum(heads), torch.zeros(2, 4), heads)
    expected = sum(F.cross_entropy(h, target) for h in heads)
    torch.testing.assert_close(deep_supervision_loss(out, target), expected)


def test_training_lowers_the_loss_and_writes_a_loadable_checkpoint(image_folder, tmp_path):
    lines = []
    result = train(
        data_dir=image_folder,
        arch="efficientnet_b4_aux",
        out=tmp_path / "model.pt",
        epochs_per_step=4,
        steps=2,
        # From random weights the signal of 8 short epochs is small. One batch of all 18
        # images keeps BatchNorm's batch statistics (over a 1x1 map at 32 px) and the
        # images (no augmentation; its transforms are tested in test_preprocessing) the
        # same in every epoch, so only the weights change the loss.
        batch_size=18,
        img_size=32,
        augment=False,
        decay_epoch=3,
        progress=False,
        log=lines.append,
    )

    assert len(result.history) == len(lines) == 8
    assert lines[0].startswith("step 1/2 epoch 1/4 stages 2/9 lr 1.00e-03 loss ")
    assert "acc " in lines[0]
    lrs = [1e-3, 1e-3, 1e-3, 1e-4, 1e-5, 1e-5, 1e-5, 1e-6]
    assert [h.lr for h in result.history] == pytest.approx(lrs)
    assert [h.trainable_stages for h in result.history] == [2] * 4 + [9] * 4
    losses = [h.loss for h in result.history]
    assert losses[3] < losses[0] - 0.3, losses  # step 1: heads and last stage
    assert losses[-1] < losses[3], losses  # step 2: everything

    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt.arch == "efficientnet_b4_aux"
    assert ckpt.classes == result.classes == ["disc", "square", "stripes"]
    assert Preprocessing.from_dict(ckpt.preprocessing) == Preprocessing.for_arch(
        "efficientnet_b4_aux", img_size=32
    )
    assert ckpt.trained
    assert ckpt.meta["epochs"] == 8
    assert ckpt.meta["final_loss"] == pytest.approx(losses[-1])
    assert ckpt.meta["final_accuracy"] == result.final_accuracy
    apply_weights(build_model("efficientnet_b4_aux", num_classes=3), ckpt.state_dict)


def test_training_needs_two_classes(tmp_path):
    (tmp_path / "only").mkdir()
    shape_image("disc").save(tmp_path / "only" / "a.png")
    with pytest.raises(ValueError, match="at least two class folders"):
        train(
            data_dir=tmp_path,
            arch="resnet101",
            out=tmp_path / "m.pt",
            epochs_per_step=1,
            steps=1,
            batch_size=2,
            progress=False,
        )


def test_training_a_baseline_with_the_recipe_augmentation(image_folder, tmp_path):
    result = train(
        data_dir=image_folder,
        arch="efficientnet_b4",
        out=tmp_path / "plain.pt",
        epochs_per_step=1,
        steps=1,
        batch_size=6,
        img_size=32,
        progress=False,
        log=lambda line: None,
    )
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt.arch == "efficientnet_b4" and ckpt.meta["augment"] is True
    assert result.history[0].trainable_stages == 9  # one step: everything at once
    apply_weights(build_model("efficientnet_b4", num_classes=3), ckpt.state_dict)
