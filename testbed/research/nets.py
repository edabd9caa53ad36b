"""Models and data for the research evaluation: a tiny ResNet on scikit-learn digits, tabular
sensor data, and head/tail splits of registered torchvision models on ImageFolder trees.

:class:`SplitTask` bundles what every method needs: a frozen head (node), a tail (server), the
full model as teacher, and train/test tensors. ``target`` is ``"labels"`` when the dataset's labels
index the model's outputs (the digits net, a checkpoint trained on the folder) and ``"teacher"``
otherwise (ImageNet weights on an arbitrary folder): methods then distil the unsplit model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from testbed.errors import ConfigError
from testbed.research.common import batches, load_checkpoint, save_checkpoint, seeded

__all__ = [
    "TABULAR_CLASSIFICATION",
    "TABULAR_REGRESSION",
    "TINY_MODEL",
    "TINY_POINTS",
    "BasicBlock",
    "SplitTask",
    "TabularMLP",
    "TinyResNet",
    "digits_tensors",
    "evaluate_logits",
    "is_regression_table",
    "load_split_task",
    "tabular_tensors",
    "task_loss",
    "train_classifier",
]

TINY_MODEL = "tiny_resnet"  # also in testbed.research.registry (torch-free)
TINY_POINTS = ("stem", "layer1", "layer2")


class BasicBlock(nn.Module):
    """ResNet basic block (He et al., 2016) with a 1x1 projection shortcut when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                      if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.short(x))


class TinyResNet(nn.Module):
    """A three-stage ResNet for small inputs (16x16 digits): stem (16ch, 16x16) -> layer1 (32ch, 8x8) -> layer2 (64ch, 4x4)."""

    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.layer1 = BasicBlock(width, 2 * width, 2)
        self.layer2 = BasicBlock(2 * width, 4 * width, 2)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(4 * width, num_classes))

    def stages(self) -> list[tuple[str, nn.Module]]:
        return [("stem", self.stem), ("layer1", self.layer1), ("layer2", self.layer2), ("logits", self.head)]

    def split(self, point: str) -> tuple[nn.Module, nn.Module]:
        """Head and tail sharing this model's modules, split after stage ``point``."""
        names = [n for n, _ in self.stages()]
        if point not in ("input", *TINY_POINTS):
            raise ConfigError("split", point, f"split points of {TINY_MODEL}: input, {', '.join(TINY_POINTS)}")
        cut = 0 if point == "input" else names.index(point) + 1
        return (nn.Sequential(*(m for _, m in self.stages()[:cut])),
                nn.Sequential(*(m for _, m in self.stages()[cut:])))

    def forward(self, x: Tensor) -> Tensor:
        for _, m in self.stages():
            x = m(x)
        return x


class TabularMLP(nn.Module):
    """A two-layer perceptron for tabular sensor features."""

    def __init__(self, features: int, classes: int, hidden: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def _split_indices(n: int, test_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=g)
    n_test = round(n * test_fraction)
    return order[n_test:], order[:n_test]


def digits_tensors(size: int = 16, seed: int = 0, test_fraction: float = 1 / 3,
                   limit: int | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """scikit-learn digits via :func:`testbed.data.load_dataset`, upsampled to ``size`` and normalized
    to [-1, 1]; a seeded train/test split: ``(x_train, y_train, x_test, y_test)``."""
    from testbed.split.data import Preprocess, load_dataset

    ds = load_dataset("digits", Preprocess(crop=size, resize=size, mean=(0.5,) * 3, std=(0.5,) * 3), limit=limit)
    assert ds.labels is not None
    tr, te = _split_indices(len(ds), test_fraction, seed)
    return ds.images[tr], ds.labels[tr], ds.images[te], ds.labels[te]


#: bundled scikit-learn tables; ``diabetes`` is a regression table (target: disease progression)
TABULAR_CLASSIFICATION = ("breast_cancer", "wine", "iris")
TABULAR_REGRESSION = ("diabetes",)


def is_regression_table(name: str) -> bool:
    """True for a bundled regression table (``diabetes``)."""
    return name in TABULAR_REGRESSION


def tabular_tensors(name: str = "breast_cancer", seed: int = 0,
                    test_fraction: float = 1 / 3) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """A bundled scikit-learn table (``breast_cancer``, ``wine``, ``iris``; ``diabetes`` for
    regression) or a CSV file whose last column is an integer label; features standardized with the
    training split's statistics. Classification labels are int64; the regression target is float32,
    standardized with the training split's mean and standard deviation (so an MSE of 1.0 is the
    training mean's error and ``R^2 = 1 - MSE / var(test target)``)."""
    import numpy as np

    if name.endswith(".csv"):
        if not Path(name).is_file():
            raise ConfigError("dataset", name, "an existing CSV file (features..., label)")
        data = np.loadtxt(name, delimiter=",", skiprows=1)
        x_np, y_np = data[:, :-1], data[:, -1].astype(np.int64)
    else:
        from sklearn import datasets as skd

        loaders = {"breast_cancer": skd.load_breast_cancer, "wine": skd.load_wine, "iris": skd.load_iris,
                   "diabetes": skd.load_diabetes}
        if name not in loaders:
            raise ConfigError("dataset", name, f"one of {', '.join(loaders)} or a CSV path")
        bunch = loaders[name]()
        x_np, y_np = bunch.data, bunch.target
    x = torch.tensor(x_np, dtype=torch.float32)
    tr, te = _split_indices(len(x), test_fraction, seed)
    mu, sd = x[tr].mean(0), x[tr].std(0).clamp(min=1e-6)
    x = (x - mu) / sd
    if is_regression_table(name):
        y = torch.tensor(y_np, dtype=torch.float32)
        y = (y - y[tr].mean()) / y[tr].std()
    else:
        y = torch.tensor(y_np, dtype=torch.int64)
    return x[tr], y[tr], x[te], y[te]


def train_classifier(model: nn.Module, x: Tensor, y: Tensor, epochs: int, seed: int, lr: float = 3e-3,
                     batch_size: int = 64, device: torch.device | None = None,
                     shift: int = 0) -> list[float]:
    """Adam + :func:`task_loss` (cross-entropy on integer labels, MSE on a float regression target);
    ``shift`` > 0 adds random translations of up to ``shift`` pixels. Returns the mean loss of every
    epoch."""
    device = device or torch.device("cpu")
    model.to(device).train()
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * len(batches(len(x), batch_size)))
    losses = []
    for _ in range(epochs):
        total = 0.0
        for idx in batches(len(x), batch_size, g):
            xb, yb = x[idx], y[idx]
            if shift:
                dx, dy = (int(v) for v in torch.randint(-shift, shift + 1, (2,), generator=g))
                xb = torch.roll(xb, (dy, dx), dims=(2, 3))
            loss = task_loss(model(xb.to(device)), yb.to(device), None)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(x))
    model.eval()
    return losses


@dataclass
class SplitTask:
    """A split model with its data. ``head`` is frozen; ``tail`` may be fine-tuned by a method."""

    model_name: str
    point: str
    head: nn.Module
    tail: nn.Module
    x_train: Tensor
    y_train: Tensor | None
    x_test: Tensor
    y_test: Tensor | None
    target: str  # "labels" or "teacher"
    weights: str
    #: the unsplit model's outputs on ``x_train``/``x_test`` when already known (computed once, shared
    #: by every split of the same model and frames); :meth:`teacher_logits` fills them in on first use
    teacher_train: Tensor | None = None
    teacher_test: Tensor | None = None
    _memo: dict[str, Tensor] = field(default_factory=dict, repr=False)

    def _which(self, x: Tensor) -> str | None:
        return "train" if x is self.x_train else "test" if x is self.x_test else None

    def features(self, x: Tensor, batch_size: int = 256, device: torch.device | None = None) -> Tensor:
        """Head outputs of ``x`` (no gradient), on the CPU; those of the task's own train/test
        tensors are computed once."""
        which = self._which(x)
        if which is not None and f"features.{which}" in self._memo:
            return self._memo[f"features.{which}"]
        out = self._features(x, batch_size, device)
        if which is not None:
            self._memo[f"features.{which}"] = out
        return out

    def _features(self, x: Tensor, batch_size: int, device: torch.device | None) -> Tensor:
        device = device or torch.device("cpu")
        self.head.to(device).eval()
        with torch.no_grad():
            return torch.cat([self.head(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])

    def teacher_logits(self, x: Tensor, batch_size: int = 256, device: torch.device | None = None) -> Tensor:
        """Unsplit model outputs (``tail(head(x))`` with the original tail); those of the task's own
        train/test tensors are computed once (or given as :attr:`teacher_train`/:attr:`teacher_test`)."""
        which = self._which(x)
        known = self.teacher_train if which == "train" else self.teacher_test if which == "test" else None
        if known is not None:
            return known
        out = self._teacher(x, batch_size, device)
        if which == "train":
            self.teacher_train = out
        elif which == "test":
            self.teacher_test = out
        return out

    def _teacher(self, x: Tensor, batch_size: int, device: torch.device | None) -> Tensor:
        device = device or torch.device("cpu")
        self.tail.to(device).eval()
        f = self.features(x, batch_size, device)
        with torch.no_grad():
            return torch.cat([self.tail(f[i:i + batch_size].to(device)).cpu() for i in range(0, len(f), batch_size)])


def task_loss(logits: Tensor, labels: Tensor | None, teacher: Tensor | None, temperature: float = 2.0) -> Tensor:
    """Cross-entropy on labels, mean squared error on a float (regression) target (the model's one
    output), or distillation (KL to the unsplit model's softened outputs)."""
    if labels is not None and labels.is_floating_point():
        return F.mse_loss(logits.reshape(labels.shape), labels)
    if labels is not None:
        return F.cross_entropy(logits, labels)
    assert teacher is not None
    t = temperature
    return F.kl_div(F.log_softmax(logits / t, 1), F.log_softmax(teacher / t, 1), reduction="batchmean",
                    log_target=True) * t * t


def evaluate_logits(logits: Tensor, labels: Tensor | None, teacher: Tensor | None) -> dict[str, float]:
    """Accuracy (when labels are meaningful) and top-1 agreement with the unsplit model; for a float
    (regression) target, ``mse`` and ``r2`` (coefficient of determination) on the target instead."""
    if labels is not None and labels.is_floating_point():
        pred_r = logits.reshape(labels.shape)
        mse = float(((pred_r - labels) ** 2).mean())
        return {"mse": mse, "r2": 1.0 - mse / float(((labels - labels.mean()) ** 2).mean())}
    pred = logits.argmax(1)
    out: dict[str, float] = {}
    if labels is not None:
        out["accuracy"] = float((pred == labels).float().mean())
    if teacher is not None:
        out["agreement"] = float((pred == teacher.argmax(1)).float().mean())
    return out


def load_split_task(model: str = TINY_MODEL, weights: str = "", split: str = "layer1",
                    dataset: str = "digits", limit: int | None = None, seed: int = 0,
                    base_epochs: int = 12, device: torch.device | None = None,
                    base_out: str | None = None) -> SplitTask:
    """Build the split model and its data.

    ``tiny_resnet`` on ``digits``: ``weights`` is a checkpoint from ``testbed train base`` or empty,
    in which case the net is trained here (``base_epochs``, seeded) and saved to ``base_out``.
    A registered torchvision model: ``weights`` as for ``testbed payloads`` (``DEFAULT``, a checkpoint
    path or ``random``), ``dataset`` an ImageFolder (``imagefolder:/root``); its labels are used only
    when ``weights`` is a checkpoint (trained on that folder), otherwise the methods distil the
    unsplit model.
    """
    if model == TINY_MODEL:
        if dataset != "digits":
            raise ConfigError("dataset", dataset, f"digits for {TINY_MODEL} (use a torchvision model for folders)")
        x_tr, y_tr, x_te, y_te = digits_tensors(seed=seed, limit=limit)
        with seeded(seed):
            net = TinyResNet()
        if weights:
            blob = load_checkpoint(weights, "base", "weights")
            net.load_state_dict(blob["state"])
        else:
            train_classifier(net, x_tr, y_tr, base_epochs, seed, device=device, shift=2)
            net.cpu()
            if base_out:
                save_checkpoint(base_out, "base", {"model": TINY_MODEL, "classes": 10},
                                net.state_dict(), {"epochs": base_epochs, "seed": seed})
        net.cpu().eval()
        head, tail = net.split(split)
        return SplitTask(model, split, head.eval(), tail.eval(), x_tr, y_tr, x_te, y_te, "labels",
                         weights or (base_out or "trained in process"))
    from testbed.split.data import load_dataset, preprocess_for
    from testbed.split.models import get_spec, split_model
    from testbed.split.models.weights import is_checkpoint_path

    spec = get_spec(model)
    if spec.task != "classification":
        raise ConfigError("model", model, "a classification model")
    w = weights or "DEFAULT"
    ds = load_dataset(dataset, preprocess_for(model, w), limit=limit)
    head, tail = split_model(model, split, w, seed)
    tr, te = _split_indices(len(ds), 1 / 3, seed)
    use_labels = is_checkpoint_path(w) and ds.labels is not None
    y = ds.labels if use_labels else None
    return SplitTask(model, split, head, tail, ds.images[tr], y[tr] if y is not None else None,
                     ds.images[te], y[te] if y is not None else None, "labels" if use_labels else "teacher", w)
