"""The classifier family behind one contract, and its registry.

Every model maps ``tokens: LongTensor[B, T]`` (right-padded with 0) and ``lengths: LongTensor[B]`` to
``(log_probs[B, C], attention[B, T] or None)``. The default input is the seeds' one-hot character, looked
up from an identity table and fed to torch's fused recurrent kernels; ``embed > 0`` learns a dense
embedding instead. Padding never changes a name's result: states are read at each name's last real
character, backward directions run over each name reversed in place, attention (and self-attention) is
masked to real characters, and convolutions are max-pooled over windows that touch the name only.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError
from .text import ALPHABET, VOCAB_SIZE


@dataclass
class ModelConfig:
    """Sizes of a model; the single source of their defaults."""

    name: str = "gru"
    hidden: int = 128
    layers: int = 1
    bidirectional: bool = False
    embed: int = 0  # 0: the seeds' one-hot input
    dropout: float = 0.0
    members: int = 1  # above 1: an ensemble of this many such models, their probabilities averaged
    heads: int = 4  # transformer: attention heads (hidden must be a multiple)
    vocab: int = 0  # ngram-lr: size of its character n-gram vocabulary (set when it is fitted)
    ngram: int = 5  # ngram-lr: its longest n-gram
    edges: bool = False  # ngram-lr: n-grams also see where the name starts and ends (scikit-learn's char_wb)
    vocab_limit: int = 0  # ngram-lr: keep only this many n-grams, those in the most training names (0: all)
    compact: bool = False  # held at float16 and stored so (ngram-lr: weights and idf, codes as int32; a network: all)
    int8: bool = False  # ngram-lr with compact: weights held and stored as int8 times one float scale a language
    mix: list = field(default_factory=list)  # a mixed ensemble: each member's config as a dict (name "mixed")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


class CharInput(nn.Module):
    """Characters to vectors: one-hot rows of an identity table (the seeds' input), or a learned embedding."""

    def __init__(self, embed: int):
        super().__init__()
        self.size = embed or len(ALPHABET)
        if embed:
            self.table = nn.Embedding(VOCAB_SIZE, embed, padding_idx=0)
        else:
            onehot = torch.cat([torch.zeros(1, len(ALPHABET)), torch.eye(len(ALPHABET))])  # row 0 is padding
            self.register_buffer("onehot", onehot, persistent=False)
            self.table = None

    @property
    def vectors(self) -> torch.Tensor:
        """Each token's vector: (VOCAB_SIZE, E), row 0 the padding's."""
        return self.table.weight if self.table is not None else self.onehot

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, E)
        if self.table is not None:
            return self.table(tokens)
        return F.embedding(tokens, self.onehot)


def _dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    return F.dropout(x, p, training) if p and training else x


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence's first ``lengths[b]`` steps in place, leaving padding where it is."""
    idx = reversal(lengths, x.size(1))  # (B, T)
    return x.gather(1, idx.unsqueeze(-1).expand_as(x))


def reversal(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """The time index :func:`reverse_padded` reads each step from: (B, T)."""
    pos = torch.arange(T, device=lengths.device).unsqueeze(0)  # (1, T)
    L = lengths.unsqueeze(1)  # (B, 1)
    return torch.where(pos < L, L - 1 - pos, pos)


def last_state(states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``states[b, lengths[b] - 1]`` for each b: (B, T, H) -> (B, H)."""
    if states.size(0) == 1:  # one name: its last step, without a gather
        return states[:, int(lengths[0]) - 1]
    idx = (lengths - 1).view(-1, 1, 1).expand(-1, 1, states.size(2))
    return states.gather(1, idx).squeeze(1)


class Encoder(nn.Module):
    """Stacked, optionally bidirectional recurrent layers over right-padded batches.

    Each direction of each layer is its own single-layer torch module, so the backward direction runs
    over each name reversed in place and never reads padding first.
    """

    def __init__(
        self,
        cell: type[nn.RNNBase],
        input_size: int,
        hidden: int,
        *,
        layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        **cell_kwargs,
    ):
        super().__init__()
        self.directions = 2 if bidirectional else 1
        self.hidden = hidden
        self.dropout = dropout
        self.fwd = nn.ModuleList()
        self.bwd = nn.ModuleList()
        size = input_size
        for _ in range(layers):
            self.fwd.append(cell(size, hidden, batch_first=True, **cell_kwargs))
            if bidirectional:
                self.bwd.append(cell(size, hidden, batch_first=True, **cell_kwargs))
            size = hidden * self.directions

    @property
    def output_size(self) -> int:
        return self.hidden * self.directions

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, E) -> all states (B, T, D*H) and the final summary (B, D*H)."""
        for i, fwd in enumerate(self.fwd):
            if i:
                x = _dropout(x, self.dropout, self.training)
            out, _ = fwd(x)  # (B, T, H)
            if self.directions == 2:
                back, _ = self.bwd[i](reverse_padded(x, lengths))  # (B, T, H), reversed time
                out = torch.cat([out, reverse_padded(back, lengths)], dim=2)  # (B, T, 2H)
            x = out
        return x, self.summary(x, lengths)

    def summary(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The final summary (B, D*H) of all states (B, T, D*H): forward at the last real character, backward
        at the first."""
        final = last_state(states[..., : self.hidden], lengths)  # (B, H)
        if self.directions == 2:
            final = torch.cat([final, states[:, 0, self.hidden :]], dim=1)  # backward direction ends at t=0
        return final

    def encode(
        self, char_input: CharInput, tokens: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``self(char_input(tokens), lengths)``; without gradients, on GRUs in float32 on the CPU, by
        :func:`gru_inference`, which gives the same numbers with less work."""
        if not self.training and not torch.is_grad_enabled() and _plain_cpu_grus([*self.fwd, *self.bwd]):
            states = gru_inference(self, char_input, tokens, lengths)
            return states, self.summary(states, lengths)
        return self(char_input(tokens), lengths)


def _plain_cpu_grus(cells: Sequence[nn.Module]) -> bool:
    """Whether every cell is a float32 ``nn.GRU`` on the CPU, as :func:`gru_inference` needs (int8 ones are
    other modules, bf16 ones another dtype)."""
    return all(
        type(c) is nn.GRU and c.bias and c.weight_hh_l0.dtype == torch.float32 and c.weight_hh_l0.device.type == "cpu"
        for c in cells
    )


def _gru_steps(gates_in: Callable[[int], torch.Tensor], cell: nn.GRU, out: torch.Tensor) -> None:
    """A single-layer GRU from a zero state over ``out.size(0)`` steps; ``gates_in(t)`` gives step t's input
    gates ``W_ih x_t + b_ih`` (B, 3H); each step's state goes to ``out[t]`` (T, B, H). The operations are
    torch's own CPU GRU cell's, in its order (``aten/src/ATen/native/RNN.cpp``), so the numbers are the same;
    the reset and update gates go through one sigmoid."""
    H = cell.hidden_size
    h = out.new_zeros(out.size(1), H)
    gh, n = out.new_empty(out.size(1), 3 * H), out.new_empty(out.size(1), H)  # reused: no allocation per step
    gh_rz, gh_n, r, z = gh[:, : 2 * H], gh[:, 2 * H :], gh[:, :H], gh[:, H : 2 * H]  # views, made once
    w_hh, b_hh = cell.weight_hh_l0.t(), cell.bias_hh_l0
    for t in range(out.size(0)):
        gi = gates_in(t)  # (B, 3H)
        torch.addmm(b_hh, h, w_hh, out=gh)  # (B, 3H): W_hh h + b_hh, as F.linear computes it
        gh_rz.add_(gi[:, : 2 * H]).sigmoid_()  # reset | update
        torch.add(gi[:, 2 * H :], gh_n.mul_(r), out=n).tanh_()
        h = torch.sub(h, n, out=out[t]).mul_(z).add_(n)


def gru_inference(encoder: Encoder, char_input: CharInput, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``encoder``'s states (B, T, D*H) for ``tokens`` (B, T), as ``encoder(char_input(tokens), lengths)[0]``
    computes them, with less work for inference: the first layer's input gates are one row per character of
    the alphabet (``W_ih`` applied to ``char_input``'s table once, then looked up), the steps run time-major
    on contiguous memory and write their states in place, and the backward direction reads its characters
    reversed by index rather than reversing the vectors."""
    B, T = tokens.shape
    H, D = encoder.hidden, encoder.directions
    rev = reversal(lengths, T)  # (B, T)
    flat_rev = (rev * B + torch.arange(B, device=tokens.device).unsqueeze(1)).reshape(-1)  # (B*T,): rows of (T*B, H)
    x = None
    for i, fwd in enumerate(encoder.fwd):
        states = torch.empty(B, T, D * H, dtype=torch.float32, device=tokens.device)
        for cell, backward in [(fwd, False)] + ([(encoder.bwd[i], True)] if D == 2 else []):
            if x is None:  # first layer: the input gates of each token, looked up step by step
                table = F.linear(char_input.vectors, cell.weight_ih_l0, cell.bias_ih_l0)  # (V, 3H)
                order = (tokens.gather(1, rev) if backward else tokens).t().contiguous()  # (T, B)
                buffer = table.new_empty(B, table.size(1))

                def gates_in(t, table=table, order=order, buffer=buffer):
                    return torch.index_select(table, 0, order[t], out=buffer)

            else:  # as torch's GRU computes them, on its time-major input
                source = reverse_padded(x, lengths) if backward else x  # (B, T, D*H)
                gates_in = F.linear(source.transpose(0, 1), cell.weight_ih_l0, cell.bias_ih_l0).__getitem__
            if backward:  # reversed time, then each name's states put back in place
                back = torch.empty(T, B, H, dtype=torch.float32, device=tokens.device)
                _gru_steps(gates_in, cell, back)
                states[..., H:] = back.view(T * B, H).index_select(0, flat_rev).view(B, T, H)
            else:
                _gru_steps(gates_in, cell, states[..., :H].transpose(0, 1))
        x = states
    return x


class Classifier(nn.Module):
    """Base class: ``forward(tokens, lengths) -> (log_probs, attention or None)``."""

    has_attention = False

    def __init__(self, config: ModelConfig, n_classes: int):
        super().__init__()
        self.config = config
        self.n_classes = n_classes


class TutorialRNN(Classifier):
    """Seed 002 (the PyTorch tutorial): ``i2h`` and ``i2o`` on ``[input, hidden]``, no activation.

    The output is read from the last input and the hidden state *before* it, as the tutorial does. The
    linear recurrence runs as a parallel prefix scan over time (log2 T batched matrix products).
    """

    def __init__(self, config: ModelConfig, n_classes: int):
        super().__init__(config, n_classes)
        if config.layers != 1 or config.bidirectional:
            raise ValueError("tutorial-rnn has one layer and one direction")
        self.input = CharInput(config.embed)
        size = self.input.size + config.hidden
        self.i2h = nn.Linear(size, config.hidden)
        self.i2o = nn.Linear(size, n_classes)

    def forward(self, tokens, lengths):
        x = self.input(tokens)  # (B, T, E)
        E = x.size(2)
        u = F.linear(x, self.i2h.weight[:, :E], self.i2h.bias)  # (B, T, H): input part of each step
        A = self.i2h.weight[:, E:]  # (H, H)
        h, power, d = u, A, 1
        while d < h.size(1):  # h_t = A h_{t-1} + u_t, by doubling
            h = torch.cat([h[:, :d], h[:, d:] + h[:, :-d] @ power.T], dim=1)
            power, d = power @ power, d * 2
        B = tokens.size(0)
        prev = torch.cat([h.new_zeros(B, 1, h.size(2)), h], dim=1)  # prev[:, t] = h_{t-1}
        h_before = last_state(prev, lengths)  # (B, H): hidden state before the last character
        x_last = last_state(x, lengths)  # (B, E)
        logits = self.i2o(torch.cat([x_last, h_before], dim=1))  # (B, C)
        return F.log_softmax(logits, dim=1), None


class RecurrentClassifier(Classifier):
    """An encoder's final state (forward: last real character; backward: first) -> linear."""

    cell: type[nn.RNNBase] = nn.GRU
    cell_kwargs: ClassVar[dict] = {}

    def __init__(self, config: ModelConfig, n_classes: int):
        super().__init__(config, n_classes)
        self.input = CharInput(config.embed)
        self.encoder = Encoder(
            self.cell,
            self.input.size,
            config.hidden,
            layers=config.layers,
            bidirectional=config.bidirectional,
            dropout=config.dropout,
            **self.cell_kwargs,
        )
        self.h2o = nn.Linear(self.encoder.output_size, n_classes)

    def forward(self, tokens, lengths):
        _, final = self.encoder.encode(self.input, tokens, lengths)  # (B, D*H)
        logits = self.h2o(_dropout(final, self.config.dropout, self.training))  # (B, C)
        return F.log_softmax(logits, dim=1), None


class SeedRNN(RecurrentClassifier):
    """Seed 000's ``RNNClassifier``: ``h = tanh(i2h([x, h]))``, output ``h2o(h)``.

    The seed has one bias per step; torch's kernel has two, so ``bias_hh`` is held at zero and frozen,
    which keeps the arithmetic (and SGD's steps) the seed's.
    """

    cell = nn.RNN
    cell_kwargs: ClassVar[dict] = {"nonlinearity": "tanh"}

    def __init__(self, config: ModelConfig, n_classes: int):
        with torch.random.fork_rng():  # initialise as the seed does: Linear(I + H, H), then h2o
            super().__init__(config, n_classes)
        first = self.encoder.fwd[0]
        seed_i2h = nn.Linear(self.input.size + config.hidden, config.hidden)
        self.h2o.reset_parameters()
        with torch.no_grad():
            first.weight_ih_l0.copy_(seed_i2h.weight[:, : self.input.size])
            first.weight_hh_l0.copy_(seed_i2h.weight[:, self.input.size :])
            first.bias_ih_l0.copy_(seed_i2h.bias)
        for rnn in [*self.encoder.fwd, *self.encoder.bwd]:
            rnn.bias_hh_l0.data.zero_()
            rnn.bias_hh_l0.requires_grad_(False)


class GRUClassifier(RecurrentClassifier):
    """Seed 000's ``GRUClassifier``: ``nn.GRU``, final hidden state -> linear."""

    cell = nn.GRU


class LSTMClassifier(RecurrentClassifier):
    """Seed 000's bonus: ``nn.LSTM``, final hidden state -> linear."""

    cell = nn.LSTM


class GRUAttention(Classifier):
    """Seed 000's ``AttentionalGRUClassifier``: ``e_j = w·h_j``, softmax over real characters, ``c = Σ α_j h_j``."""

    has_attention = True

    def __init__(self, config: ModelConfig, n_classes: int):
        super().__init__(config, n_classes)
        self.input = CharInput(config.embed)
        self.encoder = Encoder(
            nn.GRU,
            self.input.size,
            config.hidden,
            layers=config.layers,
            bidirectional=config.bidirectional,
            dropout=config.dropout,
        )
        self.h2o = nn.Linear(self.encoder.output_size, n_classes)
        self.att = nn.Linear(self.encoder.output_size, 1)

    def forward(self, tokens, lengths):
        states, _ = self.encoder.encode(self.input, tokens, lengths)  # (B, T, D*H)
        context, alpha = attention_pool(states, self.att(states).squeeze(2), lengths)  # (B, D*H), (B, T)
        logits = self.h2o(_dropout(context, self.config.dropout, self.training))  # (B, C)
        return F.log_softmax(logits, dim=1), alpha


def real_mask(tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """True at each name's real characters, False on padding: (B, T)."""
    return torch.arange(tokens.size(1), device=tokens.device).unsqueeze(0) < lengths.unsqueeze(1)


def attention_pool(
    states: torch.Tensor, scores: torch.Tensor, lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``alpha = softmax(scores)`` over real characters only (0 on padding), ``c = Σ α_j h_j``:
    states (B, T, H), scores (B, T) -> context (B, H), alpha (B, T)."""
    alpha = torch.softmax(scores.masked_fill(~real_mask(scores, lengths), float("-inf")), dim=1)  # (B, T)
    return torch.bmm(alpha.unsqueeze(1), states).squeeze(1), alpha


def sinusoidal_positions(T: int, d: int, device: torch.device) -> torch.Tensor:
    """The Transformer paper's fixed position codes: (T, d)."""
    pos = torch.arange(T, device=device, dtype=torch.float32).unsqueeze(1)  # (T, 1)
    freq = torch.exp(torch.arange(0, d, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / d))
    out = torch.zeros(T, d, device=device)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq[: d // 2])  # d even
    return out


class CharTransformer(Classifier):
    """A small pre-norm Transformer encoder over characters (learned embedding of size ``hidden``, plus sinusoidal
    codes of each character's position counted from the start and from the end of the name, since endings
    carry much of a name's language; padding masked out of every key), pooled as gru-attention pools:
    ``e_j = w·h_j``, softmax over
    real characters, ``c = Σ α_j h_j`` -> linear. Its attention is that pooling distribution."""

    has_attention = True

    def __init__(self, config: ModelConfig, n_classes: int):
        super().__init__(config, n_classes)
        d = config.hidden
        if config.heads < 1 or d % config.heads or d % 4:
            raise ValueError(f"transformer: hidden {d} must be a multiple of heads {config.heads} and of 4")
        self.embed = nn.Embedding(VOCAB_SIZE, d, padding_idx=0)
        layer = nn.TransformerEncoderLayer(
            d, config.heads, dim_feedforward=2 * d, dropout=config.dropout, batch_first=True, norm_first=True
        )
        # no nested tensors: they change the arithmetic with the padding, and a name must not depend on it
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.att = nn.Linear(d, 1)
        self.h2o = nn.Linear(d, n_classes)

    def forward(self, tokens, lengths):
        B, T = tokens.shape
        d = self.config.hidden
        codes = sinusoidal_positions(T, d // 2, tokens.device)  # (T, d/2)
        from_end = (lengths.unsqueeze(1) - 1 - torch.arange(T, device=tokens.device)).clamp(min=0)  # (B, T)
        where = torch.cat([codes.expand(B, T, -1), codes[from_end]], dim=2)  # (B, T, d): from the start | from the end
        x = self.embed(tokens) + where  # (B, T, d)
        x = _dropout(x, self.config.dropout, self.training)
        states = self.norm(self.encoder(x, src_key_padding_mask=~real_mask(tokens, lengths)))  # (B, T, d)
        context, alpha = attention_pool(states, self.att(states).squeeze(2), lengths)  # (B, d), (B, T)
        logits = self.h2o(_dropout(context, self.config.dropout, self.training))  # (B, C)
        return F.log_softmax(logits, dim=1), alpha


class CharCNN(Classifier):
    """Character convolutions of widths 2-5 (``hidden`` filters each, zero-padded by width - 1 on both sides,
    ReLU), each max-pooled over the windows that touch the name, concatenated -> linear."""

    widths = (2, 3, 4, 5)

    def __init__(self, config: ModelConfig, n_classes: int):
        super().__init__(config, n_classes)
        self.input = CharInput(config.embed)  # padding's row is zero, as the convolution's own padding
        self.convs = nn.ModuleList(nn.Conv1d(self.input.size, config.hidden, w, padding=w - 1) for w in self.widths)
        self.h2o = nn.Linear(config.hidden * len(self.widths), n_classes)

    def forward(self, tokens, lengths):
        x = self.input(tokens).transpose(1, 2)  # (B, E, T)
        pooled = []
        for w, conv in zip(self.widths, self.convs, strict=False):
            h = F.relu(conv(x))  # (B, H, T + w - 1): window t covers characters t - w + 1 .. t
            touches = real_mask(h[:, 0], lengths + w - 1)  # (B, T + w - 1): windows holding a real character
            pooled.append(h.masked_fill(~touches.unsqueeze(1), float("-inf")).amax(2))  # (B, H)
        features = torch.cat(pooled, dim=1)  # (B, 4H)
        logits = self.h2o(_dropout(features, self.config.dropout, self.training))  # (B, C)
        return F.log_softmax(logits, dim=1), None


class NgramLR(Classifier):
    """The DESIGN's baseline as a member of the family: TF-IDF character n-grams of the folded name (1 to
    ``config.ngram`` characters; with ``config.edges`` a mark at each end of the name joins them, as
    scikit-learn's ``char_wb`` pads a word; sublinear term frequency, smooth idf, L2-normalised rows, as
    scikit-learn's ``TfidfVectorizer`` computes them) and a linear layer, fitted by logistic regression
    (:func:`nameorigin.training.fit_ngram_lr`). The n-gram vocabulary (sorted n-gram codes), the idf and the
    weights are tensors, so a checkpoint holds them all."""

    EDGE = VOCAB_SIZE  # the edge mark: one digit past the characters' (codes then count in base VOCAB_SIZE + 1)

    def __init__(self, config: ModelConfig, n_classes: int):
        super().__init__(config, n_classes)
        self.register_buffer("vocab", torch.zeros(config.vocab, dtype=torch.long))  # (V,), sorted codes
        self.register_buffer("idf", torch.ones(config.vocab))  # (V,)
        self.weight = nn.Parameter(torch.zeros(config.vocab, n_classes))  # (V, C)
        self.bias = nn.Parameter(torch.zeros(n_classes))  # (C,)

    @classmethod
    def ngram_codes(
        cls, tokens: torch.Tensor, lengths: torch.Tensor, *, max_n: int = 5, edges: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every 1..``max_n``-gram of every name as one integer (digits in base VOCAB_SIZE, or VOCAB_SIZE + 1
        with ``edges``; real characters and the edge mark are never 0, so n-grams of different lengths never
        share a code), and which of them lie inside the name (its edge marks included): (B, W) each."""
        base = cls.base(edges)
        if edges:
            marked = F.pad(tokens, (1, 1))  # (B, T + 2)
            marked[:, 0] = cls.EDGE
            marked[torch.arange(tokens.size(0), device=tokens.device), lengths + 1] = cls.EDGE
            tokens, lengths = marked, lengths + 2
        codes, valid = [], []
        T = tokens.size(1)
        for n in range(1, min(max_n, T) + 1):
            code = torch.zeros(tokens.size(0), T - n + 1, dtype=torch.long, device=tokens.device)
            for k in range(n):
                code = code * base + tokens[:, k : T - n + 1 + k]
            codes.append(code)
            start = torch.arange(T - n + 1, device=tokens.device).unsqueeze(0)  # (1, T - n + 1)
            valid.append(start + n <= lengths.unsqueeze(1))
        return torch.cat(codes, 1), torch.cat(valid, 1)

    @staticmethod
    def leading_width(width: int, n: int, *, edges: bool = False) -> int:
        """How many of :meth:`ngram_codes`' columns, for names padded to ``width`` tokens, its 1..``n``-grams
        take: they come first, the n-grams of each length one column a start."""
        T = width + (2 if edges else 0)
        return sum(T - m + 1 for m in range(1, min(n, T) + 1))

    @staticmethod
    def base(edges: bool) -> int:
        """The base the n-gram codes count in: the characters' digits, and the edge mark's with ``edges``."""
        return VOCAB_SIZE + 1 if edges else VOCAB_SIZE

    @classmethod
    def code_width(cls, config: ModelConfig) -> int:
        """One more than the largest n-gram code of ``config``'s n-grams."""
        return int(cls.base(config.edges) ** config.ngram)

    SHORT = 3  # n-grams of up to this many characters are found in a dense table, longer ones by binary search

    def _short_table(self) -> torch.Tensor:
        """Each code of an n-gram of up to :attr:`SHORT` characters: its column in the vocabulary, or -1; a dense
        table (59 ** 3 entries with edges), built from ``vocab`` when first needed and again when it changes."""
        try:
            version = self.vocab._version
        except RuntimeError:  # made under torch.inference_mode(): it cannot change in place outside it
            version = None
        key = (self.vocab.data_ptr(), version, self.vocab.device, self.vocab.numel())
        if getattr(self, "_table_key", None) != key:
            width = self.base(self.config.edges) ** min(self.SHORT, self.config.ngram)
            table = torch.full((width,), -1, dtype=torch.long, device=self.vocab.device)
            short = torch.nonzero(self.vocab < width).squeeze(1)
            table[self.vocab[short]] = short
            self._table, self._table_key = table, key
        return self._table

    def columns(self, codes: torch.Tensor, width: int) -> torch.Tensor:
        """The vocabulary column of each n-gram code (B, W), -1 for an n-gram not in it; the first ``width``
        codes of each row (the n-grams of up to :attr:`SHORT` characters) from the dense table."""
        V = self.vocab.numel()
        if not V:
            return torch.full_like(codes, -1)
        long = codes[:, width:].contiguous()
        at = torch.searchsorted(self.vocab, long).clamp(max=V - 1)
        return torch.cat([self._short_table()[codes[:, :width]], torch.where(self.vocab[at] == long, at, -1)], 1)

    def features(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The TF-IDF matrix (B, V) as sparse entries: rows, columns and values, each (K,)."""
        codes, valid = self.ngram_codes(tokens, lengths, max_n=self.config.ngram, edges=self.config.edges)  # (B, W)
        V = self.vocab.numel()
        short = self.leading_width(tokens.size(1), min(self.SHORT, self.config.ngram), edges=self.config.edges)
        col = self.columns(codes, short)  # (B, W)
        known = valid & (col >= 0)
        row = torch.arange(codes.size(0), device=codes.device).unsqueeze(1).expand_as(codes)
        keys, counts = torch.unique(row[known] * max(V, 1) + col[known], return_counts=True)  # (K,)
        rows, cols = keys // max(V, 1), keys % max(V, 1)
        values = (1 + torch.log(counts.float())) * self.idf[cols]
        norm = torch.zeros(codes.size(0), device=codes.device).index_add_(0, rows, values * values).sqrt()
        return rows, cols, values / norm[rows]

    def forward(self, tokens, lengths):
        rows, cols, values = self.features(tokens, lengths)
        logits = self.bias.expand(tokens.size(0), -1).index_add(0, rows, values.unsqueeze(1) * self.weight[cols])
        return F.log_softmax(logits, dim=1), None  # (B, C)


def stored_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors a checkpoint stores for ``model``: its state, with each ``compact`` n-gram model's weights
    and idf as float16 and its codes as int32 (with ``int8``, its weights as int8 and a float16 scale a
    language, ``weight_scale``), and each ``compact`` network's tensors as float16 (half the bytes; loading
    casts them back, exactly, since training rounded them so already: :func:`hold_compact`;
    :func:`restored_tensors` is the inverse)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for prefix, module in model.named_modules():
        config = getattr(module, "config", None)
        if not isinstance(module, Classifier) or not config.compact or config.mix or config.members > 1:
            continue
        at = f"{prefix}." if prefix else ""
        if isinstance(module, NgramLR):
            tensors[at + "idf"] = tensors[at + "idf"].half()
            if config.int8:
                q, scale = int8_weights(tensors[at + "weight"])
                tensors[at + "weight"], tensors[at + "weight_scale"] = q, scale.half()
            else:
                tensors[at + "weight"] = tensors[at + "weight"].half()
            if tensors[at + "vocab"].numel() and int(tensors[at + "vocab"].max()) >= 2**31:
                raise ValueError("compact ngram-lr: its n-gram codes do not fit in int32 (ngram too long)")
            tensors[at + "vocab"] = tensors[at + "vocab"].int()
        else:
            for key in [k for k in tensors if k.startswith(at) and tensors[k].is_floating_point()]:
                tensors[key] = tensors[key].half()
    return tensors


def int8_weights(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``weight`` (V, C) as int8 codes and a scale a column (C,), float16: ``codes * scale`` is its value."""
    scale = (weight.abs().amax(0) / 127).half().float()
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return torch.round(weight / scale).clamp(-127, 127).to(torch.int8), scale


def restored_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A checkpoint's stored tensors as the model holds them: each int8 ``weight`` times its ``weight_scale``
    (the scale itself dropped); other dtypes are cast by ``load_state_dict``."""
    out = dict(tensors)
    for key in [k for k in tensors if k.endswith("weight_scale")]:
        weight = key[: -len("_scale")]
        if weight not in out or out[weight].dtype != torch.int8:
            raise ValueError(f"{key} without an int8 {weight}")
        out[weight] = out[weight].float() * out.pop(key).float()
    return out


def hold_compact(model: nn.Module) -> nn.Module:
    """Round a ``compact`` network's parameters and buffers (every member's) to float16 precision, as the
    checkpoint stores them, so that the model trained, calibrated and saved is the model loaded."""
    with torch.no_grad():
        for module in model.modules():
            config = getattr(module, "config", None)
            if isinstance(module, Classifier) and not isinstance(module, NgramLR) and config.compact:
                for t in [*module.parameters(), *module.buffers()]:
                    if t.is_floating_point():
                        t.copy_(t.half().float())
    return model


def mean_probabilities(log_probs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Log of the mean of several models' probabilities, from their log-probabilities (each (B, C))."""
    return torch.logsumexp(torch.stack(list(log_probs)), dim=0) - math.log(len(log_probs))


class Ensemble(Classifier):
    """``config.members`` models of one kind and size, their probabilities averaged; or, with ``config.mix``, a
    mixed ensemble: one member per config in the list (any kinds), each softened by its temperature (buffer
    ``temperatures``), their probabilities mixed with the weights in the ``weights`` buffer (both fitted on
    validation names; 1 and uniform until then). The attention is the
    (weighted) mean of the members' that have one."""

    def __init__(self, config: ModelConfig, n_classes: int):
        super().__init__(config, n_classes)
        if config.mix:
            configs = [ModelConfig.from_dict(d) for d in config.mix]
            if any(c.mix for c in configs):
                raise ValueError("a mixed ensemble's members cannot be mixed ensembles")
            self.register_buffer("weights", torch.full((len(configs),), 1.0 / len(configs)))
            self.register_buffer("temperatures", torch.ones(len(configs)))
        else:
            configs = [replace(config, members=1)] * config.members
            self.weights = self.temperatures = None
        self.members = nn.ModuleList(build_model(c, n_classes) for c in configs)
        self.has_attention = any(m.has_attention for m in self.members)

    def forward(self, tokens, lengths):
        outputs = [member(tokens, lengths) for member in self.members]
        log_probs = [lp for lp, _ in outputs]
        if self.weights is None:
            return mean_probabilities(log_probs), (
                torch.stack([a for _, a in outputs]).mean(0) if self.has_attention else None
            )
        tempered = torch.log_softmax(torch.stack(log_probs) / self.temperatures.view(-1, 1, 1), dim=2)  # (M, B, C)
        mixed = torch.logsumexp(tempered + self.weights.log().view(-1, 1, 1), dim=0)  # (B, C)
        attention = None
        if self.has_attention:
            w = [(wi, a) for wi, (_, a) in zip(self.weights, outputs, strict=False) if a is not None]
            attention = sum(wi * a for wi, a in w) / sum(wi for wi, _ in w).clamp(min=1e-12)  # (B, T)
        return mixed, attention


REGISTRY: dict[str, type[Classifier]] = {
    "tutorial-rnn": TutorialRNN,
    "rnn": SeedRNN,
    "gru": GRUClassifier,
    "gru-attention": GRUAttention,
    "lstm": LSTMClassifier,
    "transformer": CharTransformer,
    "cnn": CharCNN,
    "ngram-lr": NgramLR,
}
MIXED = "mixed"  # the name of a mixed ensemble's config


class UnknownModel(InputError):
    """A model name the registry does not have."""


def build_model(config: ModelConfig, n_classes: int) -> Classifier:
    """A fresh model of ``config.name`` from the registry (an :class:`Ensemble` of them if ``config.members`` > 1)."""
    if config.members < 1:
        raise ValueError(f"members {config.members!r}: expected 1 or more")
    if config.members > 1 or config.mix:
        return Ensemble(config, n_classes)
    try:
        cls = REGISTRY[config.name]
    except KeyError:
        raise UnknownModel(f"unknown model {config.name!r}; known: {', '.join(REGISTRY)}") from None
    return cls(config, n_classes)


PRECISIONS = ("fp32", "bf16", "int8")

#: torch modules ``quantize_dynamic`` turns into int8 ones (it has no int8 ``nn.RNN``: the rnn model's
#: recurrence stays fp32 and only its output layer is quantized; tutorial-rnn is refused, see with_precision).
INT8_MODULES = (nn.GRU, nn.LSTM, nn.Linear)


class PrecisionError(ValueError):
    """A precision this model, device or CPU cannot run."""


def model_device(model: nn.Module) -> torch.device:
    """Where a model's weights live (an int8 model can have no float parameters left: then its buffers')."""
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return first.device if first is not None else torch.device("cpu")


def int8_modules(model: nn.Module) -> set[str]:
    """Names of the submodules ``quantize_dynamic`` replaces: every GRU, LSTM and Linear."""
    return {name for name, m in model.named_modules() if isinstance(m, INT8_MODULES)}


def _cpu_has_bf16() -> bool:
    """Whether oneDNN has bfloat16 kernels for this CPU (a torch build without oneDNN: no)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def with_precision(model: Classifier, precision: str) -> Classifier:
    """An inference copy of ``model`` in ``precision``: ``fp32`` as is; ``bf16`` weights and activations in
    bfloat16 (where the CPU has bf16 kernels, or on CUDA); ``int8`` dynamic quantization of the recurrent and
    linear layers (CPU only). Raises :class:`PrecisionError` where it cannot run."""
    if precision not in PRECISIONS:
        raise PrecisionError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    device = model_device(model)
    if precision == "fp32":
        return model
    if precision == "bf16":
        if device.type == "cpu" and not _cpu_has_bf16():
            raise PrecisionError(
                "precision bf16: this CPU has no bfloat16 kernels (needs AVX512-BF16 or AMX); use fp32 or int8"
            )
        return model.to(torch.bfloat16).eval()
    if device.type != "cpu":
        raise PrecisionError(f"precision int8: dynamic quantization runs on the CPU only, not {device}")
    if any(isinstance(m, TutorialRNN) for m in model.modules()):
        raise PrecisionError(
            "precision int8 does not apply to tutorial-rnn: its recurrence is a matrix read by a "
            "prefix scan (no module to quantize), and its output layer reads an unbounded linear "
            "state that int8 rounds too coarsely (probabilities move by 0.1); use fp32 or bf16"
        )
    if torch.backends.quantized.engine == "none":
        raise PrecisionError("precision int8: this torch build has no quantized engine")
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch 2.10+ points to torchao; the eager API still works
        warnings.simplefilter("ignore")
        return quantize_dynamic(model.eval(), set(INT8_MODULES), dtype=torch.qint8)


@torch.inference_mode()
def batched_log_probs(
    model: Classifier,
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    *,
    batch_size: int = 512,
    with_attention: bool = False,
) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    """Log-probabilities (N, C) for a padded set, run in length buckets; rows come back in input order.

    With ``with_attention``, also each name's attention weights over its real characters.
    """
    was_training = model.training
    model.eval()
    device = model_device(model)
    out = torch.empty(len(lengths), model.n_classes)
    attention: list[torch.Tensor] | None = [torch.empty(0)] * len(lengths) if with_attention else None
    order = torch.sort(lengths, stable=True).indices
    for idx in torch.split(order, batch_size):
        L = lengths[idx]
        T = int(L.max())
        lp, att = model(tokens[idx, :T].to(device), L.to(device))
        out[idx] = lp.float().cpu()
        if attention is not None and att is not None:
            att = att.float().cpu()
            for row, i in enumerate(idx.tolist()):
                attention[i] = att[row, : int(lengths[i])]
    model.train(was_training)
    return out, attention
