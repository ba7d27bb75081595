"""The batched trainer and the worksheet's one-name-at-a-time loop, both returning a :class:`History`."""
from __future__ import annotations

import copy
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import distributed
from .data import Encoded, Pair, add_noise_batch, length_batches
from .evaluation import metrics
from .models import Classifier, Ensemble, ModelConfig, batched_log_probs
from .text import MAX_NAME_CHARS, add_noise, encode

NOISE_ROOM_WORKSHEET = 64  # noise levels up to this fit the worksheet loop's length table

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
    class_weight: float = 0.0  # loss weight of language c: (N / (C n_c)) ** class_weight; 0: none, 1: balanced
    schedule: str = "constant"  # constant | cosine (per step over all epochs) | plateau (halve when validation stalls)
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


def validate(model: Classifier, data: Encoded, labels: Sequence[str]) -> dict:
    """Loss, accuracy and macro-F1 of ``model`` on an encoded set. Under torch.distributed each rank scores
    every ``world``-th name, and all ranks compute the same figures from everyone's predictions."""
    ranks = distributed.current()
    part = slice(ranks.rank, None, ranks.world)
    lp, _ = batched_log_probs(model, data.tokens[part], data.lengths[part])
    predicted, truth, loss = distributed.gather(lp.argmax(1), data.labels[part],
                                                F.nll_loss(lp, data.labels[part], reduction="sum").view(1), ranks=ranks)
    result = metrics(truth, predicted, labels)
    result["loss"] = float(loss.sum()) / len(truth)
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

    Without validation names (``valid`` None or empty) every epoch runs and the last one is kept.

    ``train`` must have been encoded with ``noise_room >= config.noise + 1`` when ``config.noise`` > 0.
    Returns the history; ``model`` ends with the best epoch's weights.

    Under torch.distributed (see :mod:`.distributed`) the model trains under DistributedDataParallel: every
    rank builds the same shuffled batches from the shared seed and takes its share, validation is gathered
    across ranks, and only rank 0 draws the progress bar.
    """
    if config.optimizer not in {"adam", "sgd"}:
        raise ValueError(f"optimizer {config.optimizer!r}: expected adam or sgd")
    if config.sampling not in {"natural", "balanced"}:
        raise ValueError(f"sampling {config.sampling!r}: expected natural or balanced")
    if not 0 <= config.class_weight <= 1:
        raise ValueError(f"class_weight {config.class_weight!r}: expected a power from 0 to 1")
    if config.schedule not in {"constant", "cosine", "plateau"}:
        raise ValueError(f"schedule {config.schedule!r}: expected constant, cosine or plateau")
    ranks = distributed.current()
    torch.manual_seed(config.seed + ranks.rank)  # dropout: each rank its own masks
    gen = torch.Generator().manual_seed(config.seed)  # batches and noise: the same on every rank
    net = distributed.wrap(model, ranks)
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    history = History(kind="batched")
    per_class = torch.bincount(train.labels, minlength=len(labels)).double().clamp(min=1)
    sample_weights = (1.0 / per_class)[train.labels] if config.sampling == "balanced" else None
    loss_weight = None
    if config.class_weight:
        loss_weight = ((len(train) / (len(labels) * per_class)) ** config.class_weight).float().to(device)
    steps_per_epoch = max(1, math.ceil(len(train) / config.batch_size) // ranks.world)
    if config.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs * steps_per_epoch)
    elif config.schedule == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=1)
    else:
        scheduler = None
    best_state, best, since_best = None, None, 0
    step, window = 0, torch.zeros((), device=device)
    bar = tqdm(total=config.epochs, desc="training", unit="epoch", disable=not progress or not ranks.is_main,
               leave=False)
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        model.train()
        tokens, lengths = add_noise_batch(train.tokens, train.lengths, config.noise, gen)
        order = (torch.multinomial(sample_weights, len(train), replacement=True, generator=gen)
                 if sample_weights is not None else None)
        batches = [(tokens[b, : int(lengths[b].max())].to(device), lengths[b].to(device), train.labels[b].to(device))
                   for b in distributed.shard(length_batches(lengths, config.batch_size, generator=gen, order=order),
                                              ranks)]
        epoch_loss, epoch_names = torch.zeros((), device=device), 0
        for x, L, y in batches:
            log_probs, _ = net(x, L)
            if config.label_smoothing:
                loss = F.cross_entropy(log_probs, y, weight=loss_weight, label_smoothing=config.label_smoothing)
            else:
                loss = F.nll_loss(log_probs, y, weight=loss_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.clip:
                torch.nn.utils.clip_grad_norm_(params, config.clip)
            opt.step()
            if config.schedule == "cosine":
                scheduler.step()
            detached = loss.detach()
            epoch_loss += detached * len(y)
            window += detached
            step += 1
            epoch_names += len(y)
            if step % config.log_every == 0:
                history.loss_steps.append(step)
                history.losses.append(float(window) / config.log_every)
                window.zero_()
        epoch_loss, epoch_names = distributed.total([float(epoch_loss), epoch_names], ranks)  # all ranks' names
        history.names_seen += int(epoch_names)
        history.train_seconds += time.perf_counter() - started
        row = {"epoch": epoch, "train_loss": epoch_loss / epoch_names, "seconds": history.train_seconds}
        if valid is not None and len(valid):
            row.update({k: v for k, v in validate(model, valid, labels).items() if k != "per_language"})
        history.epochs.append(row)
        if config.schedule == "plateau":
            scheduler.step(row.get("loss", row["train_loss"]))
        if on_epoch:
            on_epoch(row)
        bar.update(1)
        bar.set_postfix({k: round(row[k], 4) for k in ("train_loss", "accuracy", "macro_f1") if k in row})
        if valid is None or not len(valid):  # nothing to choose an epoch by: the last one is kept
            history.best_epoch = epoch
            continue
        if _better(config.select, row, best):
            best, best_state, since_best = row, copy.deepcopy(model.state_dict()), 0
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
    lengths = {n: torch.tensor([n]) for n in range(1, MAX_NAME_CHARS + NOISE_ROOM_WORKSHEET)}
    targets = {c: torch.tensor([index[c]]) for c in categories}
    params = [p for p in model.parameters() if p.requires_grad]
    history = History(kind="worksheet")
    model.train()
    start = time.time()
    started = time.perf_counter()
    current_loss = torch.zeros(())
    for it in range(1, config.iters + 1):
        category = categories[rng.randint(0, len(categories) - 1)]
        lines = category_lines[category]
        line = lines[rng.randint(0, len(lines) - 1)]
        if config.noise > 0:
            line = add_noise(line, config.noise, rng)
            x = torch.tensor([encode(line)])
        else:
            x = encoded[category][line]
        output, _ = model(x, lengths[x.size(1)])
        loss = F.nll_loss(output, targets[category])
        for p in params:
            p.grad = None
        loss.backward()
        with torch.no_grad():  # SGD's step, p -= lr * grad, in one fused call
            torch._foreach_add_(params, [p.grad for p in params], alpha=-config.lr)
        current_loss += loss.detach()
        if printer and config.print_every and it % config.print_every == 0:
            guess = labels[int(output.argmax(1))]
            correct = "✓" if guess == category else "✗ (%s)" % category
            printer("%d %d%% (%s) %.4f %s / %s %s" % (it, it / config.iters * 100, _time_since(start),
                                                      loss.item(), line, guess, correct))
        if config.plot_every and it % config.plot_every == 0:
            history.loss_steps.append(it)
            history.losses.append(current_loss.item() / config.plot_every)
            current_loss.zero_()
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


@dataclass(frozen=True)
class Preset:
    """A named configuration: model sizes, trainer settings, and whether it is the worksheet loop."""

    description: str
    model: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    worksheet: bool = False
    prune: int = 0


_SEEDS = {"iters": 80000, "lr": 0.005, "print_every": 5000, "plot_every": 1000}
PRESETS: dict[str, Preset] = {
    "default": Preset(
        "The batched trainer's default: gru, hidden 128, dropout 0.3 before the output layer, Adam 3e-3, "
        "batches of 64 bucketed by length, loss weights (N / (C n_c)) ** 0.25, learning rate halved when "
        "validation loss stalls, best epoch by validation macro-F1, early stop after 5 epochs.",
        model={"name": "gru", "hidden": 128, "dropout": 0.3},
        train={"class_weight": 0.25, "schedule": "plateau"}),
    "best": Preset(
        "The search's winner on validation (bench/accuracy.py): an ensemble of 3 bidirectional gru-attention "
        "models (hidden 256, learned embedding 64, dropout 0.4), each trained 20 epochs with a cosine "
        "learning rate from Adam 3e-3, label smoothing 0.1 and the default's loss weights, the best epoch "
        "by validation macro-F1; their probabilities averaged. About 5 minutes on 2 cores.",
        model={"name": "gru-attention", "hidden": 256, "bidirectional": True, "embed": 64, "dropout": 0.4,
               "members": 3},
        train={"class_weight": 0.25, "label_smoothing": 0.1, "schedule": "cosine", "epochs": 20, "patience": 0}),
    "bundled": Preset(
        "The model that ships in the package: `best` predicts about 9x slower than a gru with hidden 128, "
        "over the 3x allowed, so this is the search's best on validation within it (1.8x): one bidirectional "
        "gru-attention (hidden 128, embedding 64, dropout 0.3) trained as `best` trains its members.",
        model={"name": "gru-attention", "hidden": 128, "bidirectional": True, "embed": 64, "dropout": 0.3},
        train={"class_weight": 0.25, "label_smoothing": 0.1, "schedule": "cosine", "epochs": 20, "patience": 0}),
    "worksheet-rnn": Preset("Seed 000's plain RNN, as the worksheet trains it: hidden 32, 80,000 SGD steps at "
                            "0.005, one name at a time, 50 names a language.",
                            model={"name": "rnn", "hidden": 32}, train=_SEEDS, worksheet=True, prune=50),
    "worksheet-gru": Preset("Seed 000's GRU, as the worksheet trains it (settings of worksheet-rnn).",
                            model={"name": "gru", "hidden": 32}, train=_SEEDS, worksheet=True, prune=50),
    "worksheet-attention": Preset("Seed 000's GRU with attention, as the worksheet trains it (settings of "
                                  "worksheet-rnn).",
                                  model={"name": "gru-attention", "hidden": 32}, train=_SEEDS, worksheet=True,
                                  prune=50),
}


class UnknownPreset(ValueError):
    pass


@dataclass
class Settings:
    model: ModelConfig
    train: TrainConfig | WorksheetConfig
    worksheet: bool
    prune: int


def resolve_settings(preset: str | None, *, worksheet: bool | None = None, model: dict | None = None,
                     train: dict | None = None, prune: int | None = None) -> Settings:
    """Dataclass defaults, then the preset (``default`` for the batched trainer), then explicit values."""
    if preset is None:
        chosen = PRESETS["default"] if not worksheet else Preset("")
    elif preset in PRESETS:
        chosen = PRESETS[preset]
    else:
        raise UnknownPreset(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    is_worksheet = chosen.worksheet if worksheet is None else worksheet
    config_class = WorksheetConfig if is_worksheet else TrainConfig
    known = set(config_class.__dataclass_fields__)
    values = {k: v for k, v in {**chosen.train, **(train or {})}.items() if k in known}
    return Settings(model=ModelConfig(**{**chosen.model, **(model or {})}), train=config_class(**values),
                    worksheet=is_worksheet, prune=chosen.prune if prune is None else prune)


def fit(settings: Settings, train_pairs: Sequence[Pair], valid: Encoded | None, labels: Sequence[str], *,
        device: torch.device | str = "cpu", printer: Callable[[str], None] | None = None,
        progress: bool = False, on_epoch: Callable[[dict], None] | None = None
        ) -> tuple[Classifier, History, list[Pair]]:
    """Build ``settings.model`` and train it as ``settings`` says: seed, then prune (worksheet presets) and the
    worksheet loop, or the batched trainer (``progress``: a bar; ``on_epoch``: called with each epoch's row).
    Returns the model (on the CPU, in eval mode), its history, and the
    training pairs it saw."""
    from .data import encode_pairs, prune
    from .models import build_model
    config = settings.train
    rng = random.Random(config.seed)
    used = prune(train_pairs, settings.prune, rng) if settings.prune else list(train_pairs)
    if not used:
        raise ValueError("no training names")
    torch.manual_seed(config.seed)
    model = build_model(settings.model, len(labels)).to(device)
    if settings.worksheet:
        if isinstance(model, Ensemble):
            raise ValueError("an ensemble (members > 1) trains with the batched trainer, not the worksheet loop")
        history = train_worksheet(model.cpu(), category_lines(used), labels, config, rng=rng, printer=printer)
    else:
        train = encode_pairs(used, labels, noise_room=config.noise + 1 if config.noise else 0)
        if isinstance(model, Ensemble):
            history = _train_members(model, train, valid, labels, config, progress=progress, printer=printer,
                                     on_epoch=on_epoch)
        else:
            history = train_batched(model, train, valid, labels, config, progress=progress, on_epoch=on_epoch)
    return model.cpu().eval(), history, used


def _train_members(model: Ensemble, train: Encoded, valid: Encoded | None, labels: Sequence[str],
                   config: TrainConfig, *, progress: bool, printer: Callable[[str], None] | None,
                   on_epoch: Callable[[dict], None] | None = None) -> History:
    """Train each member alone (member i from seed ``config.seed + i``, its own best epoch and early stop);
    one history: the members' loss windows one after another, their epochs tagged with ``member``, and
    ``best`` the whole ensemble's validation figures."""
    history = History(kind="batched")
    for i, member in enumerate(model.members):
        tagged = (lambda row, i=i: on_epoch({"member": i, **row})) if on_epoch else None
        one = train_batched(member, train, valid, labels, replace(config, seed=config.seed + i), progress=progress,
                            on_epoch=tagged)
        offset = history.loss_steps[-1] if history.loss_steps else 0
        history.loss_steps += [offset + s for s in one.loss_steps]
        history.losses += one.losses
        history.epochs += [{"member": i, **row, "seconds": history.train_seconds + row["seconds"]} for row in one.epochs]
        history.train_seconds += one.train_seconds
        history.names_seen += one.names_seen
        if printer:
            figures = (f": validation accuracy {one.best['accuracy']:.4f}, macro-F1 {one.best['macro_f1']:.4f}"
                       if valid is not None and len(valid) else "")
            printer(f"member {i + 1}/{len(model.members)} (seed {config.seed + i}) trained in "
                    f"{one.train_seconds:.1f}s, best epoch {one.best_epoch}{figures}")
    if valid is not None and len(valid):
        history.best = {k: v for k, v in validate(model, valid, labels).items() if k != "per_language"}
    model.eval()
    return history
