"""The batched trainer and the worksheet's one-name-at-a-time loop, both returning a :class:`History`."""

from __future__ import annotations

import contextlib
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
from .errors import install_hint
from .evaluation import metrics
from .fitting import minimize
from .models import MIXED, Classifier, Ensemble, ModelConfig, NgramLR, batched_log_probs, hold_compact, int8_weights
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
    distill_weight: float = 0.5  # with a teacher: loss = (1 - w) label loss + w T² KL(teacher_T || student_T)
    distill_temperature: float = 2.0  # T: both distributions softened as softmax(log p / T)
    teacher_folds: int = 0  # 0: a teacher file's own probabilities; K >= 2: its recipe trained on K folds, out of fold
    corpus_mode: str = "joint"  # with a corpus: joint (both sources in every epoch) | pretrain (corpus, then labels)
    corpus_weight: float = 0.5  # joint: loss weight of a corpus name against a labelled name's 1
    # with a corpus: train on at most this many of its training names a language (its top language; the corpus's
    # most frequent first, as it stores them); 0: all. A mixed preset's member may set its own
    corpus_per_language: int = 0
    pretrain_epochs: int = 3  # pretrain: epochs on the corpus alone before the labelled epochs
    corpus_prior: str = "own"  # joint: own (a corpus name is scored under the corpus's language mix) | shared
    name_kind: str = "surname"  # what the names are: surname | first (a first-name model; see nameorigin.fullname)


@dataclass
class WorksheetConfig:
    """The seeds' settings (the worksheet presets' and ``--worksheet``'s); the single source of their defaults."""

    iters: int = 80000
    lr: float = 0.005
    noise: int = 0
    print_every: int = 5000
    plot_every: int = 1000
    seed: int = 0


@dataclass
class CorpusPart:
    """A second training source: folded names and their soft labels (N, C) over the trainer's labels, each row
    a probability distribution (a corpus's language shares; see :mod:`.corpus`)."""

    names: list[str]
    targets: torch.Tensor
    valid: list[tuple[str, str]] = field(default_factory=list)  # scored validation names: the second validation

    def __post_init__(self):
        if self.targets.shape != (len(self.names), self.targets.size(1) if self.targets.dim() == 2 else -1):
            raise ValueError(f"corpus targets {tuple(self.targets.shape)}: expected ({len(self.names)}, C)")

    def __len__(self) -> int:
        return len(self.names)

    def top_pairs(self, labels: Sequence[str]) -> list[tuple[str, str]]:
        """(name, top language) of each corpus name, ``labels`` the languages of the targets' columns."""
        return [(n, labels[i]) for n, i in zip(self.names, self.targets.argmax(1).tolist(), strict=True)]

    def capped(self, per_language: int) -> CorpusPart:
        """At most ``per_language`` names of each top language, the first in this part's order (a corpus stores
        each language's names most frequent first); the validation names stay all."""
        top = self.targets.argmax(1)
        rank = torch.zeros_like(top)  # each name's place among the names of its top language
        for c in top.unique():
            at = torch.nonzero(top == c).squeeze(1)
            rank[at] = torch.arange(len(at))
        keep = torch.nonzero(rank < per_language).squeeze(1)
        return CorpusPart([self.names[i] for i in keep.tolist()], self.targets[keep], self.valid)


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


def validate(model: Classifier, data: Encoded, labels: Sequence[str], *, shift: torch.Tensor | None = None) -> dict:
    """Loss, accuracy and macro-F1 of ``model`` on an encoded set; ``shift`` (C,) is added to the logits first
    (another source's language mix, see :func:`source_offsets`). Under torch.distributed each rank scores
    every ``world``-th name, and all ranks compute the same figures from everyone's predictions."""
    ranks = distributed.current()
    part = slice(ranks.rank, None, ranks.world)
    lp, _ = batched_log_probs(model, data.tokens[part], data.lengths[part])
    if shift is not None:
        lp = F.log_softmax(lp + shift.to(lp.device), dim=1)
    predicted, truth, loss = distributed.gather(
        lp.argmax(1), data.labels[part], F.nll_loss(lp, data.labels[part], reduction="sum").view(1), ranks=ranks
    )
    result = metrics(truth, predicted, labels)
    result["loss"] = float(loss.sum()) / len(truth)
    return result


def _better(select: str, new: dict, best: dict | None, *, both: bool = False) -> bool:
    """Is epoch ``new`` better than ``best`` by ``select``; ``both``: by the mean of both validations' figure
    (the labelled data's and the corpus's, ``corpus_`` keys)."""
    if best is None:
        return True

    def figure(row: dict, key: str) -> float:
        return (row[key] + row[f"corpus_{key}"]) / 2 if both else row[key]

    if select == "loss":
        return figure(new, "loss") < figure(best, "loss")
    return (figure(new, select), -figure(new, "loss")) > (figure(best, select), -figure(best, "loss"))


def distillation_loss(log_probs: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T² KL(softmax(teacher / T) || softmax(student / T))``, batch mean, from log-probabilities (B, C) each."""
    target = F.log_softmax(teacher / temperature, dim=1)
    return (
        F.kl_div(F.log_softmax(log_probs / temperature, dim=1), target, log_target=True, reduction="batchmean")
        * temperature**2
    )


def soft_loss(log_probs: torch.Tensor, target: torch.Tensor, row_weight: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against probability targets (B, C), ``-Σ_c t_c log q_c`` per row, as the weighted mean
    over rows of ``row_weight`` (B,): with one-hot targets and unit weights it is ``nll_loss``."""
    per_row = -(target * log_probs.clamp(min=-1e4)).sum(1)  # -inf where the target is 0 must not make NaN
    return (per_row * row_weight).sum() / row_weight.sum().clamp(min=1e-12)


@dataclass
class RowTargets:
    """Per-row training targets beside the encoded names (see :func:`joint_set`): probability rows (N, C), row
    weights (N,), optional logit offsets (N, C) added before the loss (a row's source prior against the
    labelled data's, see ``TrainConfig.corpus_prior``), and the class counts the loss weights come from (None:
    the rows' own labels)."""

    targets: torch.Tensor
    weights: torch.Tensor
    offsets: torch.Tensor | None = None
    class_counts: torch.Tensor | None = None


def source_offsets(train_labels: torch.Tensor, corpus_targets: torch.Tensor, n_classes: int) -> torch.Tensor:
    """log(corpus mix) - log(labelled mix) (C,): added to a corpus name's logits in the loss, it scores the
    name under the corpus's own language mix, so that the network's output keeps the labelled data's prior
    (logit adjustment) instead of drifting to a mix of both sources. A language the corpus lacks gets a large
    negative offset: corpus names neither teach it nor unteach it."""
    labelled = torch.bincount(train_labels, minlength=n_classes).double()
    labelled = (labelled / labelled.sum().clamp(min=1)).clamp(min=1e-4)
    mix = corpus_targets.double().mean(0).clamp(min=1e-4)
    return (mix.log() - labelled.log()).float()


def corpus_validation(
    corpus: CorpusPart, train_labels: torch.Tensor, labels: Sequence[str], prior: str
) -> tuple[Encoded, torch.Tensor] | None:
    """The corpus's scored validation names, encoded, and the offsets (C,) that score a model's answers under
    the corpus's mix (``prior="own"``: :func:`source_offsets` against ``train_labels``; ``shared``: none), as
    the choice of the best epoch and the mixture weights use them; None when the corpus has none."""
    from .data import encode_pairs

    if not corpus.valid:
        return None
    shift = source_offsets(train_labels, corpus.targets, len(labels)) if prior == "own" else torch.zeros(len(labels))
    return encode_pairs(corpus.valid, labels), shift


def joint_set(
    train: Encoded,
    corpus: CorpusPart,
    weight: float,
    *,
    noise_room: int = 0,
    soft_targets: torch.Tensor | None = None,
    prior: str = "shared",
) -> tuple[Encoded, RowTargets, torch.Tensor | None]:
    """The labelled names and the corpus names as one training set: the encoded names (a corpus name's label
    is its top language, for balanced sampling and loss weights), the row targets (one-hot for labelled
    names, soft labels for corpus names; row weights 1 and ``weight``; with ``prior="own"`` the corpus rows'
    logit offsets (:func:`source_offsets`) and the labelled names' class counts for the loss weights), and the
    teacher's log-probabilities extended over the corpus names by the corpus's own soft labels (None without a
    teacher)."""
    from .data import encode_names

    if prior not in {"own", "shared"}:
        raise ValueError(f"corpus prior {prior!r}: expected own or shared")
    n_classes = corpus.targets.size(1)
    tokens, lengths = encode_names(corpus.names, extra=noise_room)
    width = max(train.tokens.size(1), tokens.size(1))
    pad = lambda t: F.pad(t, (0, width - t.size(1)))  # noqa: E731
    joined = Encoded(
        torch.cat([pad(train.tokens), pad(tokens)]),
        torch.cat([train.lengths, lengths]),
        torch.cat([train.labels, corpus.targets.argmax(1)]),
    )
    rows = RowTargets(
        torch.cat([F.one_hot(train.labels, n_classes).float(), corpus.targets.float()]),
        torch.cat([torch.ones(len(train)), torch.full((len(corpus),), float(weight))]),
    )
    if prior == "own" and len(train):
        shift = source_offsets(train.labels, corpus.targets, n_classes)
        rows.offsets = torch.cat([torch.zeros(len(train), n_classes), shift.expand(len(corpus), n_classes)])
        rows.class_counts = torch.bincount(train.labels, minlength=n_classes).double()
    teacher = None
    if soft_targets is not None:
        teacher = torch.cat([soft_targets.float(), corpus.targets.float().clamp(min=1e-8).log()])
    return joined, rows, teacher


def train_batched(
    model: Classifier,
    train: Encoded,
    valid: Encoded | None,
    labels: Sequence[str],
    config: TrainConfig,
    *,
    progress: bool = True,
    on_epoch: Callable[[dict], None] | None = None,
    soft_targets: torch.Tensor | None = None,
    rows: RowTargets | None = None,
    second_valid: tuple[Encoded, torch.Tensor] | None = None,
) -> History:
    """Mini-batches bucketed by length, validation every epoch, the best epoch kept, early stopping.

    Without validation names (``valid`` None or empty) every epoch runs and the last one is kept.

    ``train`` must have been encoded with ``noise_room >= config.noise + 1`` when ``config.noise`` > 0.
    ``soft_targets`` (N, C), a teacher's log-probabilities on the training names, adds the distillation
    loss (``config.distill_weight``, ``config.distill_temperature``). ``rows`` (:class:`RowTargets`: probability
    rows, a corpus's soft labels beside one-hot labels, see :func:`joint_set`) replace the labels as the loss's
    targets, each row weighted by its row weight times its language's loss weight, its logits shifted by its
    offsets (if any) in the loss. ``second_valid`` (a corpus's scored validation names and the offsets (C,)
    that score them under the corpus's mix) is validated every epoch too (``corpus_accuracy``,
    ``corpus_macro_f1``), and the best epoch is chosen on the mean of both validations' ``config.select``.
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
    if rows is not None and rows.targets.shape != (len(train), len(labels)):
        raise ValueError(f"targets {tuple(rows.targets.shape)}: expected ({len(train)}, {len(labels)})")
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
    counts = rows.class_counts if rows is not None and rows.class_counts is not None else None
    per_class = (counts if counts is not None else torch.bincount(train.labels, minlength=len(labels)).double()).clamp(
        min=1
    )
    sample_weights = None
    if config.sampling == "balanced":
        sample_weights = (1.0 / torch.bincount(train.labels, minlength=len(labels)).double().clamp(min=1))[train.labels]
    loss_weight = None
    if config.class_weight:
        loss_weight = ((len(train) / (len(labels) * per_class)) ** config.class_weight).float().to(device)
    steps_per_epoch = max(1, math.ceil(len(train) / config.batch_size) // ranks.world)
    offsets = rows.offsets if rows is not None else None
    if config.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs * steps_per_epoch)
    elif config.schedule == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=1)
    else:
        scheduler = None
    best_state, best, since_best = None, None, 0
    step, window = 0, torch.zeros((), device=device)
    bar = tqdm(
        total=config.epochs, desc="training", unit="epoch", disable=not progress or not ranks.is_main, leave=False
    )
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        model.train()
        tokens, lengths = add_noise_batch(train.tokens, train.lengths, config.noise, gen)
        order = (
            torch.multinomial(sample_weights, len(train), replacement=True, generator=gen)
            if sample_weights is not None
            else None
        )
        batches = [
            (
                tokens[b, : int(lengths[b].max())].to(device),
                lengths[b].to(device),
                train.labels[b].to(device),
                soft_targets[b].to(device) if soft_targets is not None else None,
                (rows.targets[b].to(device), rows.weights[b].to(device)) if rows is not None else None,
                offsets[b].to(device) if offsets is not None else None,
            )
            for b in distributed.shard(length_batches(lengths, config.batch_size, generator=gen, order=order), ranks)
        ]
        epoch_loss, epoch_names = torch.zeros((), device=device), 0
        for x, L, y, soft, target, shift in batches:
            log_probs, _ = net(x, L)
            if shift is not None:  # each row scored under its own source's language mix
                log_probs = F.log_softmax(log_probs + shift, dim=1)
            if target is not None:
                t, w = target
                if config.label_smoothing:
                    t = t * (1 - config.label_smoothing) + config.label_smoothing / t.size(1)
                loss = soft_loss(log_probs, t, w * loss_weight[y] if loss_weight is not None else w)
            elif config.label_smoothing:
                loss = F.cross_entropy(log_probs, y, weight=loss_weight, label_smoothing=config.label_smoothing)
            else:
                loss = F.nll_loss(log_probs, y, weight=loss_weight)
            if soft is not None:
                loss = (1 - config.distill_weight) * loss + config.distill_weight * distillation_loss(
                    log_probs, soft, config.distill_temperature
                )
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
            if second_valid is not None and len(second_valid[0]):
                other = validate(model, second_valid[0], labels, shift=second_valid[1])
                row.update({f"corpus_{k}": v for k, v in other.items() if k != "per_language"})
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
        if _better(config.select, row, best, both="corpus_accuracy" in row):
            best, best_state, since_best = row, copy.deepcopy(model.state_dict()), 0
            history.best_epoch = epoch
        else:
            since_best += 1
            if config.patience and since_best >= config.patience:
                log.info(
                    "stopping early after epoch %d: no better validation %s for %d epochs",
                    epoch,
                    config.select,
                    config.patience,
                )
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
    return f"{m}m {int(s)}s"


def train_worksheet(
    model: Classifier,
    category_lines: dict[str, list[str]],
    labels: Sequence[str],
    config: WorksheetConfig,
    *,
    rng: random.Random | None = None,
    printer: Callable[[str], None] | None = print,
) -> History:
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
            correct = "✓" if guess == category else f"✗ ({category})"
            printer(
                f"{it} {int(it / config.iters * 100)}% ({_time_since(start)}) {loss.item():.4f} {line} / {guess} "
                f"{correct}"
            )
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
    members: tuple = ()  # a mixed ensemble: (model settings, trainer settings over this preset's) per member
    teacher: str | None = None  # a preset whose recipe teaches this one, out of fold (see TrainConfig.teacher_folds)


# the shipped model's network and how it trains (the bundled preset's first member; bundled-network alone)
_BUNDLED_NETWORK = {"name": "gru-attention", "hidden": 128, "bidirectional": True, "embed": 64, "dropout": 0.3}
_BUNDLED_TRAIN = {
    "class_weight": 0.25,
    "label_smoothing": 0.1,
    "schedule": "cosine",
    "epochs": 20,
    "patience": 0,
    "distill_weight": 0.25,
    "distill_temperature": 1.0,
    "teacher_folds": 3,
}

PRESETS: dict[str, Preset] = {
    "default": Preset(
        "The batched trainer's default: gru, hidden 128, dropout 0.3 before the output layer, Adam 3e-3, "
        "batches of 64 bucketed by length, loss weights (N / (C n_c)) ** 0.25, learning rate halved when "
        "validation loss stalls, best epoch by validation macro-F1, early stop after 5 epochs.",
        model={"name": "gru", "hidden": 128, "dropout": 0.3},
        train={"class_weight": 0.25, "schedule": "plateau"},
    ),
    "best": Preset(
        "The search's winner on validation (bench/accuracy.py): an ensemble of 3 bidirectional gru-attention "
        "models (hidden 256, learned embedding 64, dropout 0.4), each trained 20 epochs with a cosine "
        "learning rate from Adam 3e-3, label smoothing 0.1 and the default's loss weights, the best epoch "
        "by validation macro-F1; their probabilities averaged. About 5 minutes on 2 cores.",
        model={
            "name": "gru-attention",
            "hidden": 256,
            "bidirectional": True,
            "embed": 64,
            "dropout": 0.4,
            "members": 3,
        },
        train={"class_weight": 0.25, "label_smoothing": 0.1, "schedule": "cosine", "epochs": 20, "patience": 0},
    ),
    "bundled": Preset(
        "The model that ships in the package: a mixed ensemble of a distilled network and an n-gram member. "
        "The network: one bidirectional gru-attention (hidden 128, embedding 64, dropout 0.3) trained as `best` "
        "trains its members, on the labels and, with weight 0.25 at temperature 1, on out-of-fold "
        "probabilities of the `mixed` preset (3 mixed teachers, each trained on two thirds of the training "
        "names and predicting the third it did not see; `--distill-weight 0` skips them). The n-gram member: "
        "ngram-corpus's logistic regression on character 1-4-grams, the 40,000 in the most names, its weights "
        "held as int8 (about 1 MB); the network held at float16 (`compact`, 0.3 MB). With a corpus the network "
        "trains on at most 8,000 of its names a language (the most frequent), the n-gram member on all of them. "
        "Their weights and temperatures are fitted on validation (with a corpus: both validations).",
        model={"name": MIXED},
        train=_BUNDLED_TRAIN,
        members=(
            ({**_BUNDLED_NETWORK, "compact": True}, {"corpus_per_language": 8000}),
            (
                {"name": "ngram-lr", "ngram": 4, "edges": True, "vocab_limit": 40_000, "compact": True, "int8": True},
                {"class_weight": 1.0},
            ),
        ),
        teacher="mixed",
    ),
    "bundled-network": Preset(
        "The bundled preset's network alone (what shipped before the n-gram member joined it; the first-name "
        "model's recipe, with --distill-weight 0): one bidirectional gru-attention (hidden 128, embedding 64, "
        "dropout 0.3) trained as `best` trains its members, on the labels and, with weight 0.25 at temperature "
        "1, on out-of-fold probabilities of the `mixed` preset.",
        model=_BUNDLED_NETWORK,
        train=_BUNDLED_TRAIN,
        teacher="mixed",
    ),
    "ngram-lr": Preset(
        "The DESIGN's baseline as a model of the family: TF-IDF character 1-5-grams of the folded name and "
        "logistic regression (scikit-learn, C=10), its vocabulary, idf and weights saved as tensors.",
        model={"name": "ngram-lr"},
    ),
    "ngram-corpus": Preset(
        "ngram-lr for real names, with --corpus: character 1-5-grams with a mark at each end of the name (as "
        "scikit-learn's char_wb pads a word), the 100,000 in the most names, every language weighing alike "
        "(class weight 1); with a corpus its answers are put back under the labelled names' mix, as the "
        "networks' are (--corpus-prior own).",
        model={"name": "ngram-lr", "ngram": 5, "edges": True, "vocab_limit": 100_000},
        train={"class_weight": 1.0},
    ),
    "mixed": Preset(
        "A mixed ensemble, the search's best mix on validation (bench/accuracy.py, seed 0): a bidirectional "
        "gru-attention (hidden 128, embedding 64, dropout 0.3) and a cnn (128 filters of each width 2-5, "
        "embedding 64, dropout 0.3), each trained 20 epochs with a cosine learning rate from Adam 3e-3, label "
        "smoothing 0.1 and the default's loss weights; their probabilities mixed with a weight and a "
        "temperature per member fitted on validation. (Adding the ngram-lr or the transformer did not raise "
        "validation macro-F1.)",
        model={"name": MIXED},
        train={"class_weight": 0.25, "label_smoothing": 0.1, "schedule": "cosine", "epochs": 20, "patience": 0},
        members=(
            ({"name": "gru-attention", "hidden": 128, "bidirectional": True, "embed": 64, "dropout": 0.3}, {}),
            ({"name": "cnn", "hidden": 128, "embed": 64, "dropout": 0.3}, {}),
        ),
    ),
    "worksheet-rnn": Preset(
        "Seed 000's plain RNN, as the worksheet trains it: hidden 32, 80,000 SGD steps at "
        "0.005, one name at a time, 50 names a language.",
        model={"name": "rnn", "hidden": 32},
        worksheet=True,
        prune=50,
    ),
    "worksheet-gru": Preset(
        "Seed 000's GRU, as the worksheet trains it (settings of worksheet-rnn).",
        model={"name": "gru", "hidden": 32},
        worksheet=True,
        prune=50,
    ),
    "worksheet-attention": Preset(
        "Seed 000's GRU with attention, as the worksheet trains it (settings of worksheet-rnn).",
        model={"name": "gru-attention", "hidden": 32},
        worksheet=True,
        prune=50,
    ),
}


class UnknownPreset(ValueError):
    pass


@dataclass
class Settings:
    model: ModelConfig
    train: TrainConfig | WorksheetConfig
    worksheet: bool
    prune: int
    members: list[Settings] = field(default_factory=list)  # a mixed ensemble: each member's settings
    teacher: Settings | None = None  # a recipe whose out-of-fold probabilities teach this model


def resolve_settings(
    preset: str | None,
    *,
    worksheet: bool | None = None,
    model: dict | None = None,
    train: dict | None = None,
    prune: int | None = None,
) -> Settings:
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
    teacher = resolve_settings(chosen.teacher, train={"seed": values.get("seed", 0)}) if chosen.teacher else None
    members = [  # in a mixed preset with a teacher, the teacher teaches each network member (ngram-lr takes none)
        Settings(
            model=ModelConfig(**m),
            train=TrainConfig(**{**chosen.train, **t, **(train or {})}),
            worksheet=False,
            prune=0,
            teacher=teacher if m.get("name") != "ngram-lr" else None,
        )
        for m, t in chosen.members
    ]
    if members:
        teacher = None
    model_config = ModelConfig(**{**chosen.model, **(model or {})})
    if members:
        model_config = ModelConfig(name=MIXED, mix=[m.model.to_dict() for m in members])
    return Settings(
        model=model_config,
        train=config_class(**values),
        worksheet=is_worksheet,
        prune=chosen.prune if prune is None else prune,
        members=members,
        teacher=teacher,
    )


def recipe(doc: dict) -> Settings:
    """The settings a checkpoint was trained with (its metadata: model and training), to train it again."""
    config = ModelConfig.from_dict(doc["model"])
    known = set(TrainConfig.__dataclass_fields__)
    train = TrainConfig(**{k: v for k, v in (doc.get("training") or {}).items() if k in known})
    members = [
        Settings(model=ModelConfig.from_dict(m), train=replace(train, seed=train.seed + i), worksheet=False, prune=0)
        for i, m in enumerate(config.mix)
    ]
    return Settings(model=config, train=train, worksheet=False, prune=0, members=members)


def fit(
    settings: Settings,
    train_pairs: Sequence[Pair],
    valid: Encoded | None,
    labels: Sequence[str],
    *,
    device: torch.device | str = "cpu",
    printer: Callable[[str], None] | None = None,
    progress: bool = False,
    on_epoch: Callable[[dict], None] | None = None,
    soft_targets: torch.Tensor | None = None,
    corpus: CorpusPart | None = None,
) -> tuple[Classifier, History, list[Pair]]:
    """Build ``settings.model`` and train it as ``settings`` says: seed, then prune (worksheet presets) and the
    worksheet loop, or the batched trainer (``progress``: a bar; ``on_epoch``: called with each epoch's row);
    a mixed ensemble trains each member and fits their weights on ``valid``; ``ngram-lr`` is fitted by
    logistic regression. A teacher (``soft_targets``, a teacher's log-probabilities on ``train_pairs``, or
    ``settings.teacher``, a recipe trained out of fold here) adds distillation. Returns the model (on the CPU,
    in eval mode), its history, and the training pairs it saw.

    ``corpus`` (names with soft labels over ``labels``, already leak-guarded: see :func:`.data.leak_guard`) is a
    second source: ``config.corpus_mode`` ``joint`` trains on both in every epoch, a corpus name weighing
    ``config.corpus_weight``; ``pretrain`` trains ``config.pretrain_epochs`` epochs on the corpus alone, then on
    the labelled names. A teacher's targets cover the labelled names; on corpus names the corpus's soft labels
    stand in for it. ``ngram-lr`` takes the corpus as weighted rows (one per language of a name's soft label)."""
    from .data import encode_pairs, prune
    from .models import build_model

    config = settings.train
    rng = random.Random(config.seed)
    used = prune(train_pairs, settings.prune, rng) if settings.prune else list(train_pairs)
    if not used:
        raise ValueError("no training names")
    if corpus is not None and not len(corpus):
        corpus = None
    if corpus is not None and settings.worksheet:
        raise ValueError("the worksheet loop trains on labelled names only: it takes no corpus")
    if corpus is not None and config.corpus_mode not in {"joint", "pretrain"}:
        raise ValueError(f"corpus mode {config.corpus_mode!r}: expected joint or pretrain")
    cap = getattr(config, "corpus_per_language", 0)  # the worksheet loop's settings have none (nor a corpus)
    if cap < 0:
        raise ValueError(f"corpus_per_language {cap}: expected 0 (all) or more")
    if corpus is not None and cap and not settings.members:  # a mixed preset's member caps its own
        corpus = corpus.capped(cap)
    if settings.members:
        return _fit_mixed(
            settings, used, valid, labels, device=device, printer=printer, progress=progress, corpus=corpus
        )
    if settings.teacher is not None and soft_targets is None and not settings.worksheet and config.distill_weight:
        soft_targets = out_of_fold_log_probs(
            settings.teacher,
            used,
            labels,
            valid=valid,
            folds=config.teacher_folds,
            seed=config.seed,
            device=device,
            printer=printer,
            progress=progress,
        )
    torch.manual_seed(config.seed)
    if settings.model.name == "ngram-lr":
        if settings.worksheet or soft_targets is not None:
            raise ValueError("ngram-lr is fitted by logistic regression: no worksheet loop, no teacher")
        started = time.perf_counter()
        train = encode_pairs(used, labels, noise_room=config.noise + 1 if config.noise else 0)
        if config.noise:  # the worksheet's noise, once on each training name, seeded
            train = Encoded(
                *add_noise_batch(train.tokens, train.lengths, config.noise, torch.Generator().manual_seed(config.seed)),
                train.labels,
            )
        rows, row_weights = _weighted_rows(train, corpus, config.corpus_weight)
        row_weights, row_mix = _ngram_class_weights(rows.labels, row_weights, len(labels), config.class_weight)
        model = fit_ngram_lr(rows, len(labels), sample_weight=row_weights, config=settings.model)
        if corpus is not None and config.corpus_prior == "own":  # answers under the labelled names' mix
            with torch.no_grad():
                labelled = torch.bincount(train.labels, minlength=len(labels)).double()
                shift = (labelled / labelled.sum()).clamp(min=1e-4).log() - row_mix.clamp(min=1e-4).log()
                model.bias.add_(shift.float() * (model.bias > -30))
        history = History(kind="ngram-lr", train_seconds=time.perf_counter() - started, names_seen=len(used))
        if valid is not None and len(valid):
            history.best = {k: v for k, v in validate(model, valid, labels).items() if k != "per_language"}
        return model.eval(), history, used
    model = build_model(settings.model, len(labels)).to(device)
    if settings.worksheet:
        if isinstance(model, Ensemble):
            raise ValueError("an ensemble (members > 1) trains with the batched trainer, not the worksheet loop")
        history = train_worksheet(model.cpu(), category_lines(used), labels, config, rng=rng, printer=printer)
    else:
        room = config.noise + 1 if config.noise else 0
        train = encode_pairs(used, labels, noise_room=room)
        rows = second_valid = None
        pretrained = None
        if corpus is not None and valid is not None and len(valid):
            second_valid = corpus_validation(corpus, train.labels, labels, config.corpus_prior)
        if corpus is not None and config.corpus_mode == "joint":
            train, rows, soft_targets = joint_set(
                train,
                corpus,
                config.corpus_weight,
                noise_room=room,
                soft_targets=soft_targets,
                prior=config.corpus_prior,
            )
        elif corpus is not None:  # pretrain: the corpus alone first, its last epoch kept
            alone, rows_alone, _ = joint_set(encode_pairs([], labels, noise_room=room), corpus, 1.0, noise_room=room)
            pretrained = train_batched(
                model,
                alone,
                None,
                labels,
                replace(config, epochs=config.pretrain_epochs, schedule="constant"),
                progress=progress,
                rows=rows_alone,
            )
        if isinstance(model, Ensemble):
            history = _train_members(
                model,
                train,
                valid,
                labels,
                config,
                progress=progress,
                printer=printer,
                on_epoch=on_epoch,
                soft_targets=soft_targets,
                rows=rows,
                second_valid=second_valid,
            )
        else:
            history = train_batched(
                model,
                train,
                valid,
                labels,
                config,
                progress=progress,
                on_epoch=on_epoch,
                soft_targets=soft_targets,
                rows=rows,
                second_valid=second_valid,
            )
        if pretrained is not None:
            history = _after_pretraining(pretrained, history)
    if settings.model.compact:  # held at the precision the checkpoint stores it in, before anything is fitted on it
        hold_compact(model)
        if valid is not None and len(valid) and history.best:  # the validation figures of the model as held
            history.best.update({k: v for k, v in validate(model.cpu(), valid, labels).items() if k != "per_language"})
    return model.cpu().eval(), history, used


def _weighted_rows(train: Encoded, corpus: CorpusPart | None, weight: float) -> tuple[Encoded, torch.Tensor | None]:
    """The n-gram member's rows: the labelled names (weight 1) and, with a corpus, one row per (corpus name,
    language of its soft label) weighing ``weight`` times that language's share."""
    if corpus is None:
        return train, None
    from .data import encode_names

    rows, cols = corpus.targets.nonzero(as_tuple=True)
    tokens, lengths = encode_names([corpus.names[i] for i in rows.tolist()])
    width = max(train.tokens.size(1), tokens.size(1))
    joined = Encoded(
        torch.cat([F.pad(train.tokens, (0, width - train.tokens.size(1))), F.pad(tokens, (0, width - tokens.size(1)))]),
        torch.cat([train.lengths, lengths]),
        torch.cat([train.labels, cols]),
    )
    return joined, torch.cat([torch.ones(len(train)), weight * corpus.targets[rows, cols].float()])


def _ngram_class_weights(
    labels: torch.Tensor, weights: torch.Tensor | None, n_classes: int, exponent: float
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """The n-gram member's row weights times the loss weights of the batched trainer, (N / (C n_c)) ** exponent
    with n_c the weighted rows of language c (``exponent`` 1: every language weighs alike), and the language mix
    (C,) the weighted rows then hold (what the fitted model's answers assume)."""
    w = torch.ones(len(labels), dtype=torch.float64) if weights is None else weights.double()
    counts = torch.zeros(n_classes, dtype=torch.float64).index_add_(0, labels, w)
    if exponent:
        present = counts > 0
        per_class = torch.ones(n_classes, dtype=torch.float64)
        per_class[present] = (counts.sum() / (int(present.sum()) * counts[present])) ** exponent
        w = w * per_class[labels]
        counts = counts * per_class
        weights = w.float()
    return weights, counts / counts.sum()


def _after_pretraining(pretrained: History, history: History) -> History:
    """One history: the corpus epochs (tagged ``phase: pretrain``), then the labelled ones."""
    out = History(kind=history.kind, best_epoch=history.best_epoch, best=history.best)
    _append_member(out, pretrained, 0, key="phase", tag="pretrain")
    _append_member(out, history, 1, key="phase", tag="fine-tune")
    return out


def _blas_threads():
    """A context holding the BLAS and OpenMP pools of the libraries loaded by now (SciPy, scikit-learn) to
    torch's thread count, which ``--threads`` sets (threadpoolctl comes with scikit-learn; without it, as is)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=torch.get_num_threads())


def fit_ngram_lr(
    train: Encoded,
    n_classes: int,
    *,
    sample_weight: torch.Tensor | None = None,
    c: float = 10.0,
    max_iter: int = 2000,
    class_weight: str | dict | None = None,
    config: ModelConfig | None = None,
) -> NgramLR:
    """The n-gram member, and the DESIGN's baseline: its vocabulary (every n-gram of the training names as
    ``config`` says: 1-5 characters by default, with or without edge marks, the ``vocab_limit`` in the most
    names) and idf from ``train``, then scikit-learn's logistic regression (L2, ``C=c``, ``class_weight`` as
    scikit-learn takes it, rows weighted by ``sample_weight``) on the TF-IDF rows the model itself computes;
    the fitted coefficients become the model's weights."""
    try:
        from scipy.sparse import csr_matrix
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        raise RuntimeError(f"ngram-lr is fitted with scikit-learn: {install_hint('baseline')}") from None
    config = config or ModelConfig(name="ngram-lr")
    codes, valid = NgramLR.ngram_codes(train.tokens, train.lengths, max_n=config.ngram, edges=config.edges)  # (N, W)
    rows = torch.arange(len(train)).unsqueeze(1).expand_as(codes)[valid]
    width = NgramLR.code_width(config)
    per_name = torch.unique(rows * width + codes[valid])  # each (name, n-gram) once
    vocab, df = torch.unique(per_name % width, return_counts=True)  # sorted codes, document frequencies
    if config.vocab_limit and len(vocab) > config.vocab_limit:  # the n-grams in the most names, kept sorted
        keep = torch.sort(torch.argsort(-df, stable=True)[: config.vocab_limit]).values
        vocab, df = vocab[keep], df[keep]
    model = NgramLR(replace(config, name="ngram-lr", vocab=len(vocab)), n_classes)
    model.vocab.copy_(vocab)
    model.idf.copy_(torch.log((1 + len(train)) / (1 + df.double())).float() + 1)  # scikit-learn's smooth idf
    if config.compact:  # the idf at the precision the checkpoint stores it in
        model.idf.copy_(model.idf.half().float())
    with torch.no_grad():
        r, col, values = model.features(train.tokens, train.lengths)
    x = csr_matrix((values.numpy(), (r.numpy(), col.numpy())), shape=(len(train), len(vocab)))
    with _blas_threads():  # as many as torch's (--threads): SciPy's BLAS and scikit-learn's OpenMP took them all
        clf = LogisticRegression(C=c, max_iter=max_iter, class_weight=class_weight).fit(
            x, train.labels.numpy(), sample_weight=None if sample_weight is None else sample_weight.numpy()
        )
    classes = torch.as_tensor(clf.classes_)
    with torch.no_grad():
        model.bias.fill_(-30.0)  # languages absent from training: never predicted
        if len(classes) == 2:  # scikit-learn's binary form: logit of the second class against the first
            model.weight[:, classes[1]] = torch.as_tensor(clf.coef_[0], dtype=torch.float32)
            model.bias[classes[0]], model.bias[classes[1]] = 0.0, float(clf.intercept_[0])
        else:
            model.weight[:, classes] = torch.as_tensor(clf.coef_.T, dtype=torch.float32)
            model.bias[classes] = torch.as_tensor(clf.intercept_, dtype=torch.float32)
        if config.compact and config.int8:  # held as the checkpoint stores them: int8 codes times a scale
            codes, scale = int8_weights(model.weight)
            model.weight.copy_(codes.float() * scale)
        elif config.compact:  # held at the precision the checkpoint stores them in
            model.weight.copy_(model.weight.half().float())
    return model.eval()


def fit_mixture_weights(log_probs: Sequence[torch.Tensor], target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights on the simplex (M,) and a temperature per member (M,) that maximise the log-likelihood of
    ``target`` (N,) under ``Σ w_m softmax(log p_m / T_m)``, from each member's log-probabilities (N, C),
    solved by L-BFGS. The temperatures put members on one footing first: without them, a member trained
    with label smoothing (under-confident) loses weight to a sharper one whatever its accuracy."""
    stacked = torch.stack(list(log_probs)).double().clamp(min=-1e4)  # (M, N, C); -inf would make NaN gradients
    rows = torch.arange(len(target))
    z = torch.zeros(stacked.size(0), dtype=torch.float64, requires_grad=True)
    log_t = torch.zeros(stacked.size(0), dtype=torch.float64, requires_grad=True)

    def loss() -> torch.Tensor:
        tempered = torch.log_softmax(stacked / log_t.exp().view(-1, 1, 1), dim=2)[:, rows, target]  # (M, N)
        return -torch.logsumexp(tempered + torch.log_softmax(z, 0).unsqueeze(1), dim=0).mean()

    minimize(loss, [z, log_t], max_iter=500, tolerance_grad=1e-10)
    return torch.softmax(z.detach(), 0).float(), log_t.detach().exp().float()


def mixed_ensemble(
    models: Sequence[Classifier],
    valid: Encoded | None,
    n_classes: int,
    *,
    second_valid: tuple[Encoded, torch.Tensor] | None = None,
) -> Ensemble:
    """One :class:`Ensemble` holding ``models`` (any kinds), their weights and temperatures fitted on ``valid``
    (uniform weights and temperature 1 without); with ``second_valid`` (a corpus's scored validation names and
    the offsets (C,) that put a model's answers under the corpus's mix, as in training) on both together."""
    from .models import build_model

    config = ModelConfig(name=MIXED, mix=[m.config.to_dict() for m in models])
    ensemble = build_model(config, n_classes)
    for mine, trained in zip(ensemble.members, models, strict=True):
        mine.load_state_dict(trained.state_dict())
    if valid is not None and len(valid):
        log_probs = [batched_log_probs(m, valid.tokens, valid.lengths)[0] for m in models]
        target = valid.labels
        if second_valid is not None and len(second_valid[0]):
            names, shift = second_valid
            log_probs = [
                torch.cat([lp, torch.log_softmax(batched_log_probs(m, names.tokens, names.lengths)[0] + shift, 1)])
                for lp, m in zip(log_probs, models, strict=True)
            ]
            target = torch.cat([valid.labels, names.labels])
        weights, temperatures = fit_mixture_weights(log_probs, target)
        ensemble.weights.copy_(weights)
        ensemble.temperatures.copy_(temperatures)
    return ensemble.eval()


def _fit_mixed(
    settings: Settings,
    used: list[Pair],
    valid: Encoded | None,
    labels: Sequence[str],
    *,
    device,
    printer,
    progress,
    corpus: CorpusPart | None = None,
) -> tuple[Classifier, History, list[Pair]]:
    """Each member as its own settings say, then their mixture weights on ``valid``; one history."""
    history = History(kind="batched")
    models = []
    for i, member in enumerate(settings.members):
        model, one, _ = fit(
            member, used, valid, labels, device=device, printer=printer, progress=progress, corpus=corpus
        )
        models.append(model)
        _append_member(history, one, i)
        if printer:
            printer(
                f"member {i + 1}/{len(settings.members)} ({member.model.name}) trained in {one.train_seconds:.1f}s"
                + (
                    f": validation accuracy {one.best['accuracy']:.4f}, macro-F1 {one.best['macro_f1']:.4f}"
                    if one.best.get("accuracy") is not None
                    else ""
                )
            )
    second = None
    if corpus is not None and valid is not None and len(valid):  # both validations, as the epochs are chosen
        from .data import encode_pairs

        second = corpus_validation(corpus, encode_pairs(used, labels).labels, labels, settings.train.corpus_prior)
    model = mixed_ensemble(models, valid, len(labels), second_valid=second)
    if printer:
        printer(
            "member weights (temperatures) fitted on validation: "
            + ", ".join(
                f"{m.config.name} {w:.3f} ({t:.2f})"
                for m, w, t in zip(models, model.weights.tolist(), model.temperatures.tolist(), strict=True)
            )
        )
    if valid is not None and len(valid):
        history.best = {k: v for k, v in validate(model, valid, labels).items() if k != "per_language"}
    return model, history, used


def fold_of_each(pairs: Sequence[Pair], folds: int, seed: int) -> torch.Tensor:
    """A fold index (N,) for each pair; a name that carries two labels keeps both in the same fold."""
    names = sorted({n for n, _ in pairs})
    order = torch.randperm(len(names), generator=torch.Generator().manual_seed(seed)).tolist()
    fold = {names[i]: k % folds for k, i in enumerate(order)}
    return torch.tensor([fold[n] for n, _ in pairs], dtype=torch.long)


def out_of_fold_log_probs(
    teacher: Settings,
    pairs: Sequence[Pair],
    labels: Sequence[str],
    *,
    folds: int,
    valid: Encoded | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    printer: Callable[[str], None] | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Teacher log-probabilities (N, C) for ``pairs`` that no teacher saw: ``folds`` copies of the ``teacher``
    recipe, each trained on the other folds (its best epoch chosen on ``valid``) and predicting its own."""
    from .data import encode_pairs

    if folds < 2:
        raise ValueError(f"teacher folds {folds!r}: expected 2 or more (each teacher must leave a fold out)")
    fold = fold_of_each(pairs, folds, seed)
    encoded = encode_pairs(pairs, labels)
    out = torch.empty(len(pairs), len(labels))
    for k in range(folds):
        held = (fold == k).nonzero().squeeze(1)
        rest = [p for p, f in zip(pairs, fold.tolist(), strict=True) if f != k]
        model, history, _ = fit(teacher, rest, valid, labels, device=device, printer=None, progress=progress)
        out[held] = batched_log_probs(model, encoded.tokens[held], encoded.lengths[held])[0]
        if printer:
            printer(
                f"teacher {k + 1}/{folds} ({teacher.model.name}) trained in {history.train_seconds:.1f}s on "
                f"{len(rest)} names, predicting the {len(held)} it did not see"
            )
    return out


def _append_member(history: History, one: History, i: int, *, key: str = "member", tag=None) -> None:
    """Add member ``i``'s history to an ensemble's: loss windows after the previous member's, epochs tagged
    ``{key: tag}`` (``tag`` default ``i``)."""
    offset = history.loss_steps[-1] if history.loss_steps else 0
    history.loss_steps += [offset + s for s in one.loss_steps]
    history.losses += one.losses
    history.epochs += [
        {key: i if tag is None else tag, **row, "seconds": history.train_seconds + row["seconds"]} for row in one.epochs
    ]
    history.train_seconds += one.train_seconds
    history.names_seen += one.names_seen


def _train_members(
    model: Ensemble,
    train: Encoded,
    valid: Encoded | None,
    labels: Sequence[str],
    config: TrainConfig,
    *,
    progress: bool,
    printer: Callable[[str], None] | None,
    on_epoch: Callable[[dict], None] | None = None,
    soft_targets: torch.Tensor | None = None,
    rows: RowTargets | None = None,
    second_valid: tuple[Encoded, torch.Tensor] | None = None,
) -> History:
    """Train each member alone (member i from seed ``config.seed + i``, its own best epoch and early stop);
    one history: the members' loss windows one after another, their epochs tagged with ``member``, and
    ``best`` the whole ensemble's validation figures."""
    history = History(kind="batched")
    for i, member in enumerate(model.members):
        tagged = (lambda row, i=i: on_epoch({"member": i, **row})) if on_epoch else None
        one = train_batched(
            member,
            train,
            valid,
            labels,
            replace(config, seed=config.seed + i),
            progress=progress,
            on_epoch=tagged,
            soft_targets=soft_targets,
            rows=rows,
            second_valid=second_valid,
        )
        _append_member(history, one, i)
        if printer:
            figures = (
                f": validation accuracy {one.best['accuracy']:.4f}, macro-F1 {one.best['macro_f1']:.4f}"
                if valid is not None and len(valid)
                else ""
            )
            printer(
                f"member {i + 1}/{len(model.members)} (seed {config.seed + i}) trained in "
                f"{one.train_seconds:.1f}s, best epoch {one.best_epoch}{figures}"
            )
    if valid is not None and len(valid):
        history.best = {k: v for k, v in validate(model, valid, labels).items() if k != "per_language"}
    model.eval()
    return history
