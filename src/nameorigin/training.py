"""The batched trainer and the worksheet's one-name-at-a-time loop, both returning a :class:`History`."""
from __future__ import annotations

import copy
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data import Encoded, Pair, add_noise_batch, length_batches
from .evaluation import metrics
from .models import Classifier, batched_log_probs
from .text import add_noise, encode

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """The batched trainer's settings; the single source of their defaults."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    optimizer: str = "adam"  # adam | sgd
    sampling: str = "natural"  # natural | balanced (each language equally often)
    clip: float = 1.0  # gradient-norm clipping; 0 turns it off
    patience: int = 5  # epochs without a better validation score before stopping; 0 never stops early
    select: str = "macro_f1"  # validation figure that picks the best epoch: macro_f1 | accuracy | loss
    noise: int = 0  # the worksheet's punctuation noise on training names
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    seed: int = 0
    log_every: int = 50  # steps per loss window in the history


@dataclass
class WorksheetConfig:
    """The seeds' settings."""

    iters: int = 80000
    lr: float = 0.005
    noise: int = 0
    print_every: int = 5000
    plot_every: int = 1000
    seed: int = 0


@dataclass
class History:
    """Loss per step window, validation metrics per epoch, and the run's totals."""

    kind: str
    loss_steps: list[int] = field(default_factory=list)  # step at the end of each window
    losses: list[float] = field(default_factory=list)  # mean training loss over each window
    epochs: list[dict] = field(default_factory=list)  # {"epoch", "loss", "accuracy", "macro_f1", "seconds"}
    best_epoch: int | None = None
    best: dict = field(default_factory=dict)
    train_seconds: float = 0.0
    names_seen: int = 0

    @property
    def names_per_second(self) -> float:
        return self.names_seen / self.train_seconds if self.train_seconds else 0.0

    @property
    def final_loss(self) -> float:
        return self.losses[-1] if self.losses else float("nan")

    def to_dict(self) -> dict:
        return {**asdict(self), "names_per_second": self.names_per_second}


def validate(model: Classifier, data: Encoded, labels: Sequence[str]) -> dict:
    """Loss, accuracy and macro-F1 of ``model`` on an encoded set."""
    lp, _ = batched_log_probs(model, data.tokens, data.lengths)
    result = metrics(data.labels, lp.argmax(1), labels)
    result["loss"] = float(F.nll_loss(lp, data.labels))
    return result


def _better(select: str, new: dict, best: dict | None) -> bool:
    if best is None:
        return True
    if select == "loss":
        return new["loss"] < best["loss"]
    return (new[select], -new["loss"]) > (best[select], -best["loss"])


def train_batched(model: Classifier, train: Encoded, valid: Encoded | None, labels: Sequence[str],
                  config: TrainConfig, *, progress: bool = True,
                  on_epoch: Callable[[dict], None] | None = None) -> History:
    """Mini-batches bucketed by length, validation every epoch, the best epoch kept, early stopping.

    ``train`` must have been encoded with ``noise_room >= config.noise + 1`` when ``config.noise`` > 0.
    Returns the history; ``model`` ends with the best epoch's weights.
    """
    if config.optimizer not in {"adam", "sgd"}:
        raise ValueError(f"optimizer {config.optimizer!r}: expected adam or sgd")
    if config.sampling not in {"natural", "balanced"}:
        raise ValueError(f"sampling {config.sampling!r}: expected natural or balanced")
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    history = History(kind="batched")
    class_weights = None
    if config.sampling == "balanced":
        per_class = torch.bincount(train.labels, minlength=len(labels)).double()
        class_weights = (1.0 / per_class.clamp(min=1))[train.labels]
    best_state, best, since_best = None, None, 0
    step, window = 0, torch.zeros((), device=device)
    bar = tqdm(total=config.epochs, desc="training", unit="epoch", disable=not progress, leave=False)
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        model.train()
        tokens, lengths = add_noise_batch(train.tokens, train.lengths, config.noise, gen)
        order = (torch.multinomial(class_weights, len(train), replacement=True, generator=gen)
                 if class_weights is not None else None)
        batches = [(tokens[b, : int(lengths[b].max())].to(device), lengths[b].to(device), train.labels[b].to(device))
                   for b in length_batches(lengths, config.batch_size, generator=gen, order=order)]
        epoch_loss = torch.zeros((), device=device)
        for x, L, y in batches:
            log_probs, _ = model(x, L)
            if config.label_smoothing:
                loss = F.cross_entropy(log_probs, y, label_smoothing=config.label_smoothing)
            else:
                loss = F.nll_loss(log_probs, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.clip:
                torch.nn.utils.clip_grad_norm_(params, config.clip)
            opt.step()
            detached = loss.detach()
            epoch_loss += detached * len(y)
            window += detached
            step += 1
            history.names_seen += len(y)
            if step % config.log_every == 0:
                history.loss_steps.append(step)
                history.losses.append(float(window) / config.log_every)
                window.zero_()
        history.train_seconds += time.perf_counter() - started
        row = {"epoch": epoch, "train_loss": float(epoch_loss) / len(train), "seconds": history.train_seconds}
        if valid is not None and len(valid):
            row.update({k: v for k, v in validate(model, valid, labels).items() if k != "per_language"})
        history.epochs.append(row)
        if on_epoch:
            on_epoch(row)
        bar.update(1)
        bar.set_postfix({k: round(row[k], 4) for k in ("train_loss", "accuracy", "macro_f1") if k in row})
        score = row if valid is not None and len(valid) else {**row, "loss": row["train_loss"], "accuracy": 0.0, "macro_f1": 0.0}
        if _better(config.select, score, best):
            best, best_state, since_best = score, copy.deepcopy(model.state_dict()), 0
            history.best_epoch = epoch
        else:
            since_best += 1
            if config.patience and since_best >= config.patience:
                log.info("stopping early after epoch %d: no better validation %s for %d epochs",
                         epoch, config.select, config.patience)
                break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    history.best = {k: v for k, v in (best or {}).items()}
    model.eval()
    return history


def _time_since(since: float) -> str:
    s = time.time() - since
    m = math.floor(s / 60)
    s -= m * 60
    return "%dm %ds" % (m, s)


def train_worksheet(model: Classifier, category_lines: dict[str, list[str]], labels: Sequence[str],
                    config: WorksheetConfig, *, rng: random.Random | None = None,
                    printer: Callable[[str], None] | None = print) -> History:
    """The seeds' loop: pick a language uniformly, then a name, add noise, one SGD step on that name alone.

    Prints the seeds' line every ``print_every`` steps and keeps the mean loss of every ``plot_every``
    steps. ``rng`` (default ``random.Random(config.seed)``) drives the sampling as the seeds' ``random`` does.
    """
    rng = rng or random.Random(config.seed)
    torch.manual_seed(config.seed)
    categories = [c for c in category_lines if category_lines[c]]
    index = {lang: i for i, lang in enumerate(labels)}
    encoded = {c: {line: torch.tensor([encode(line)]) for line in lines} for c, lines in category_lines.items()}
    targets = {c: torch.tensor([index[c]]) for c in categories}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    history = History(kind="worksheet")
    model.train()
    start = time.time()
    started = time.perf_counter()
    current_loss = 0.0
    for it in range(1, config.iters + 1):
        category = categories[rng.randint(0, len(categories) - 1)]
        lines = category_lines[category]
        line = lines[rng.randint(0, len(lines) - 1)]
        if config.noise > 0:
            line = add_noise(line, config.noise, rng)
            x = torch.tensor([encode(line)])
        else:
            x = encoded[category][line]
        output, _ = model(x, torch.tensor([x.size(1)]))
        loss = F.nll_loss(output, targets[category])
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss_value = loss.item()
        current_loss += loss_value
        if printer and config.print_every and it % config.print_every == 0:
            guess = labels[int(output.argmax(1))]
            correct = "✓" if guess == category else "✗ (%s)" % category
            printer("%d %d%% (%s) %.4f %s / %s %s" % (it, it / config.iters * 100, _time_since(start),
                                                      loss_value, line, guess, correct))
        if config.plot_every and it % config.plot_every == 0:
            history.loss_steps.append(it)
            history.losses.append(current_loss / config.plot_every)
            current_loss = 0.0
    history.train_seconds = time.perf_counter() - started
    history.names_seen = config.iters
    model.eval()
    return history


def category_lines(pairs: Sequence[Pair]) -> dict[str, list[str]]:
    """The seeds' ``{language: [names]}`` in sorted language order."""
    out: dict[str, list[str]] = {}
    for name, lang in pairs:
        out.setdefault(lang, []).append(name)
    return dict(sorted(out.items()))
