"""The seeds' one-name-at-a-time code, reimplemented faithfully: the reference that the tests check the
batched models and the worksheet loop against, and that the benchmarks in ``bench/`` time side by side.
Nothing in the package uses it.

Every step does what the worksheet does: pick a language, then a name, add noise, build the one-hot
``lineToTensor`` for that name, run the model one name at a time, and take one SGD step.
"""

from __future__ import annotations

import random
import time

import torch
import torch.nn.functional as F
from torch import nn

from nameorigin.text import ALPHABET, NOISE_CHARS


def line_to_tensor(line: str) -> torch.Tensor:
    tensor = torch.zeros(len(line), 1, len(ALPHABET))
    for li, letter in enumerate(line):
        tensor[li][0][ALPHABET.find(letter)] = 1
    return tensor


class RNNClassifier(nn.Module):
    def __init__(self, input_size, hidden_size, output_size):
        super().__init__()
        self.hidden_size = hidden_size
        self.i2h = nn.Linear(input_size + hidden_size, hidden_size)
        self.h2o = nn.Linear(hidden_size, output_size)
        self.activation = nn.Tanh()
        self.softmax = nn.LogSoftmax(dim=1)

    def forward(self, input, hidden):
        combined = torch.cat((input, hidden), 1)
        hidden = self.activation(self.i2h(combined))
        return self.softmax(self.h2o(hidden)), hidden

    def init_hidden(self):
        return torch.zeros(1, self.hidden_size)


class GRUClassifier(nn.Module):
    def __init__(self, input_size, hidden_size, output_size):
        super().__init__()
        self.gru = nn.GRU(input_size, hidden_size)
        self.h2o = nn.Linear(hidden_size, output_size)

    def forward(self, input_sequence):
        _, hidden = self.gru(input_sequence)
        return F.log_softmax(self.h2o(hidden.view(1, -1)), dim=1)


class TutorialRNN(nn.Module):
    """Seed 002: the tutorial's RNN."""

    def __init__(self, input_size, hidden_size, output_size):
        super().__init__()
        self.hidden_size = hidden_size
        self.i2h = nn.Linear(input_size + hidden_size, hidden_size)
        self.i2o = nn.Linear(input_size + hidden_size, output_size)
        self.softmax = nn.LogSoftmax(dim=1)

    def forward(self, input, hidden):
        combined = torch.cat((input, hidden), 1)
        return self.softmax(self.i2o(combined)), self.i2h(combined)

    def init_hidden(self):
        return torch.zeros(1, self.hidden_size)


SEED_MODELS = {"rnn": RNNClassifier, "gru": GRUClassifier, "tutorial-rnn": TutorialRNN}


def run_model(model, line_tensor):
    if isinstance(model, GRUClassifier):
        return model(line_tensor)
    hidden = model.init_hidden()
    for i in range(line_tensor.size(0)):
        output, hidden = model(line_tensor[i], hidden)
    return output


def seed_train(
    model,
    category_lines: dict[str, list[str]],
    iters: int,
    *,
    noise: int = 0,
    lr: float = 0.005,
    rng: random.Random | None = None,
    plot_every: int = 1000,
) -> tuple[float, list[float]]:
    """The seeds' training loop for ``iters`` steps; returns names (updates) per second and the mean loss of
    every ``plot_every`` steps."""
    rng = rng or random.Random(0)
    categories = list(category_lines)
    criterion = nn.NLLLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    all_losses, current_loss = [], 0.0
    start = time.perf_counter()
    for it in range(1, iters + 1):
        category = categories[rng.randint(0, len(categories) - 1)]
        lines = category_lines[category]
        line = lines[rng.randint(0, len(lines) - 1)]
        if noise > 0:
            for _ in range(rng.randint(0, noise + 1)):
                line += rng.choice(NOISE_CHARS)
        category_tensor = torch.tensor([categories.index(category)], dtype=torch.long)
        line_tensor = line_to_tensor(line)
        optimizer.zero_grad()
        output = run_model(model, line_tensor)
        loss = criterion(output, category_tensor)
        loss.backward()
        optimizer.step()
        current_loss += loss.item()
        if it % plot_every == 0:
            all_losses.append(current_loss / plot_every)
            current_loss = 0
    return iters / (time.perf_counter() - start), all_losses


def seed_evaluate(model, names: list[str]) -> tuple[torch.Tensor, float]:
    """The seeds' evaluation, one name at a time; returns predicted indices and names per second."""
    out = []
    start = time.perf_counter()
    with torch.no_grad():
        for name in names:
            output = run_model(model, line_to_tensor(name))
            out.append(int(output.topk(1)[1][0].item()))
    return torch.tensor(out), len(names) / (time.perf_counter() - start)
