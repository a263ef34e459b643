"""The training recipe of Zhu et al. 2021 on an ImageFolder data set.

- ImageNet-pretrained backbone (``pretrained=True``; needs timm's weights);
- gradual unfreezing in ``steps`` steps, the first layers last: step 1 trains the
  heads and the last stage, each further step releases earlier stages, and the last
  step trains everything including the stem;
- the step's base learning rate falls geometrically from ``lr_max`` (1e-3) to ``lr_min``
  (1e-5); within a step it drops tenfold after ``decay_epoch`` epochs (25 in the paper);
- SGD with momentum 0.9; random rotation (-30..30 degrees) and flips; Shades of Gray
  colour constancy; 380x380 input for EfficientNet-b4;
- deep supervision: the loss is the sum of the cross-entropies of all heads (the seven
  auxiliary heads and the final classifier; just the logits for the baselines).

With a pretrained backbone, frozen stages also keep their BatchNorm statistics (eval
mode), so a frozen stage is exactly the pretrained one. From random initialisation the
running statistics mean nothing, so there BatchNorm keeps normalising by batch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder
from tqdm.auto import tqdm

from inference.checkpoints import save_checkpoint
from inference.nets import Net, NetOutput, build_model
from inference.preprocessing import Preprocessing


@dataclass(frozen=True)
class EpochLog:
    step: int
    epoch: int  # within the step, from 1
    lr: float  # at the start of the epoch
    loss: float  # mean per image of the summed cross-entropies
    accuracy: float  # of the summed logits' argmax, on the augmented training images
    trainable_stages: int


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    sha256: str
    arch: str
    classes: list[str]
    history: list[EpochLog]

    @property
    def final_loss(self) -> float:
        return self.history[-1].loss

    @property
    def final_accuracy(self) -> float:
        return self.history[-1].accuracy


def unfreeze_schedule(num_stages: int, steps: int) -> list[int]:
    """How many trailing stages are trainable at each step: 2 (head + last stage) first,
    all ``num_stages`` at the last step, evenly in between; all at once for one step."""
    if steps < 1:
        raise ValueError("steps must be at least 1")
    if steps == 1 or num_stages <= 2:
        return [num_stages] * steps
    return [2 + round((num_stages - 2) * k / (steps - 1)) for k in range(steps)]


def step_learning_rates(steps: int, lr_max: float = 1e-3, lr_min: float = 1e-5) -> list[float]:
    """Base learning rate of each step, geometric from ``lr_max`` to ``lr_min``."""
    if steps == 1:
        return [lr_max]
    ratio = lr_min / lr_max
    return [lr_max * ratio ** (k / (steps - 1)) for k in range(steps)]


def set_trainable(
    model: Net, trainable_stages: int, *, freeze_bn_stats: bool = True
) -> list[nn.Parameter]:
    """Freeze all but the last ``trainable_stages`` stages; returns the trainable params.

    Call after ``model.train()``: with ``freeze_bn_stats`` frozen stages go to eval mode.
    """
    stages = model.stage_modules()
    cut = len(stages) - trainable_stages
    params = []
    for i, modules in enumerate(stages):
        trainable = i >= cut
        for module in modules:
            module.requires_grad_(trainable)
            if trainable:
                params.extend(module.parameters())
            elif freeze_bn_stats:
                module.eval()
    return params


def deep_supervision_loss(out: NetOutput, target: torch.Tensor) -> torch.Tensor:
    """Sum over heads of the mean cross-entropy."""
    return sum(F.cross_entropy(head, target) for head in out.heads)


def train(
    *,
    data_dir: str | os.PathLike,
    arch: str,
    out: str | os.PathLike,
    epochs_per_step: int,
    steps: int,
    batch_size: int,
    img_size: int | None = None,
    pretrained: bool = False,
    seed: int = 0,
    lr_max: float = 1e-3,
    lr_min: float = 1e-5,
    decay_epoch: int = 25,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    num_workers: int = 0,
    augment: bool = True,
    device: str | torch.device | None = None,
    progress: bool = True,
    log: Callable[[str], object] = print,
) -> TrainResult:
    """Train ``arch`` on the ImageFolder at ``data_dir`` and write a checkpoint to ``out``.

    Classes are the ImageFolder's sub-directory names, sorted. ``log`` receives one line
    per epoch. ``augment=False`` drops the random rotation and flips (for debugging).
    Deterministic on CPU for a given ``seed`` and ``num_workers``.
    """
    if epochs_per_step < 1:
        raise ValueError("epochs_per_step must be at least 1")
    torch.manual_seed(seed)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    preprocessing = Preprocessing.for_arch(arch, img_size=img_size)
    transform = (
        preprocessing.training_transform() if augment else preprocessing.inference_transform()
    )
    dataset = ImageFolder(os.fspath(data_dir), transform=transform)
    if len(dataset.classes) < 2:
        raise ValueError(f"{data_dir} needs at least two class folders")
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
        pin_memory=device.type == "cuda",
        drop_last=len(dataset) > batch_size,  # no 1-image batch for BatchNorm
        persistent_workers=num_workers > 0,
    )

    model = build_model(
        arch, num_classes=len(dataset.classes), pretrained=pretrained, img_size=img_size
    )
    model.to(device, memory_format=torch.channels_last)
    schedule = unfreeze_schedule(len(model.stage_modules()), steps)
    history: list[EpochLog] = []

    for step, (trainable_stages, base_lr) in enumerate(
        zip(schedule, step_learning_rates(steps, lr_max, lr_min), strict=True), start=1
    ):
        optimizer = torch.optim.SGD(
            set_trainable(model.train(), trainable_stages, freeze_bn_stats=pretrained),
            lr=base_lr,
            momentum=momentum,
            weight_decay=weight_decay,
        )
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [decay_epoch], gamma=0.1)
        for epoch in range(1, epochs_per_step + 1):
            model.train()
            set_trainable(model, trainable_stages, freeze_bn_stats=pretrained)
            lr = optimizer.param_groups[0]["lr"]
            loss, accuracy = _train_epoch(
                model,
                loader,
                optimizer,
                device,
                desc=f"step {step}/{steps} epoch {epoch}/{epochs_per_step}",
                progress=progress,
            )
            scheduler.step()
            entry = EpochLog(step, epoch, lr, loss, accuracy, trainable_stages)
            history.append(entry)
            log(
                f"step {step}/{steps} epoch {epoch}/{epochs_per_step} "
                f"stages {trainable_stages}/{len(model.stage_modules())} lr {lr:.2e} "
                f"loss {loss:.4f} acc {accuracy:.3f}"
            )

    meta = {
        "trained": True,
        "epochs": steps * epochs_per_step,
        "steps": steps,
        "epochs_per_step": epochs_per_step,
        "final_loss": history[-1].loss,
        "final_accuracy": history[-1].accuracy,
        "pretrained": pretrained,
        "seed": seed,
        "lr_max": lr_max,
        "lr_min": lr_min,
        "decay_epoch": decay_epoch,
        "batch_size": batch_size,
        "augment": augment,
        "num_images": len(dataset),
        "history": [asdict(h) for h in history],
    }
    out = Path(out)
    sha = save_checkpoint(
        out,
        model=model,
        arch=arch,
        classes=list(dataset.classes),
        preprocessing=preprocessing,
        meta=meta,
    )
    return TrainResult(out, sha, arch, list(dataset.classes), history)


def _train_epoch(model, loader, optimizer, device, *, desc, progress) -> tuple[float, float]:
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    for x, y in tqdm(loader, desc=desc, leave=False, disable=not progress):
        x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        y = y.to(device, non_blocking=True)
        out = model.forward_all(x)
        loss = deep_supervision_loss(out, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += loss.detach() * len(y)
        correct += (out.logits.argmax(dim=1) == y).sum()
        seen += len(y)
    return total_loss.item() / seen, correct.item() / seen
