"""What is fitted on validation after training and applied at prediction: temperature, conformal sets,
target priors, the out-of-scope score, abstention.

Fitting (:func:`calibrate`) runs once, after training, on the validation names only; the result, a
:class:`Trust`, is stored in the checkpoint (:meth:`Trust.to_meta`: JSON in the metadata, one small tensor in
the weights file) and applied by the predictor through one array-in, array-out entry point::

    result = trust.apply(log_probs,            # (N, C) the model's log-probabilities
                         folded_names,         # N folded names (the out-of-scope score reads them)
                         coverage=0.9,         # or None: no prediction sets
                         prior="auto")         # None | "uniform" | "auto" | (C,) weights | {language: weight}
    result.probabilities  # (N, C) after temperature and prior
    result.sets           # (N, C) bool, or None
    result.out_of_scope   # (N,) in [0, 1], or None (no detector in this checkpoint)
    result.abstained      # (N,) bool;  result.reason  # (N,) object: None | "low-confidence" | "out-of-scope"
    result.prior          # (C,) the prior used ("auto": the one estimated), or None

The pieces:

* **Temperature**: ``softmax(log_probs / T)``, T fitted by NLL on validation.
* **Conformal sets** (split conformal): the validation names' non-conformity scores are stored; for coverage
  C the threshold is their ``ceil((n + 1) C) / n`` quantile, so any C in (0, 1) works at prediction. Three
  scores are tried (LAC ``1 - p_true``, APS, RAPS) and the one giving the smallest mean set at 0.9 is kept.
  A set always holds the top language (never empty).
* **Target priors**: Bayes' rule, ``p'(c|x) ∝ p(c|x) w(c) / m(c)``, where ``m`` is the model's own prior: the
  mean calibrated probability of each language over the validation names. A model trained with loss weights
  that favour rare languages does not say ``π_train`` on average (it says more of the rare ones), and Bayes'
  rule against ``π_train`` then over-corrects: EM against it ran away on the held-out names of the bundled
  recipe (Vietnamese 0.32 of a mix that has 0.004; accuracy 0.839 → 0.548), against ``m`` it stays put (0.835).
  ``auto`` estimates ``w`` on the input by EM (Saerens et al., 2002), starting from ``π_train``. Checkpoints
  without ``m`` use ``π_train``.
* **Out-of-scope score**: a logistic regression over features that go beyond the top probability: the mean
  per-character surprise (-log P) of the name under character trigram models of the training names (all
  languages together, the best-fitting language, the top language; and at its worst character), under a
  background trigram model of the out-of-scope names (a likelihood ratio, as Ren et al., 2019), the top
  probability and the entropy. It is fitted on validation names (in scope) against Faker's surnames of
  :data:`OOS_LOCALES` (languages that are none of the model's), the half of them picked by name hash
  (:func:`hash_share`); their own background features are cross-fitted (each fold's background leaves it out).
* **Abstention**: ``out-of-scope`` when the score is above ``max_out_of_scope``, else ``low-confidence`` when
  the top probability is below ``min_confidence``. Defaults are chosen on validation so that each sets aside
  :attr:`TrustConfig.abstain_share` (5 %) of the in-scope validation names, with ``min_confidence`` at most 0.5
  and ``max_out_of_scope`` at least 0.5 (the class-balanced detector's even odds). An abstained name keeps its
  languages.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import InputError, install_hint
from .fitting import minimize
from .text import PUNCTUATION

log = logging.getLogger(__name__)

#: Faker locales whose languages are none of the tutorial's 18: Finnish, Hungarian, Turkish, Swedish, Danish,
#: Norwegian, Estonian, Lithuanian, Latvian, Indonesian, Hindi, Yoruba, Twi, Swahili, Georgian, Armenian,
#: Azerbaijani. Their surnames are the out-of-scope names the detector is fitted and checked on.
OOS_LOCALES = (
    "fi_FI",
    "hu_HU",
    "tr_TR",
    "sv_SE",
    "da_DK",
    "no_NO",
    "et_EE",
    "lt_LT",
    "lv_LV",
    "id_ID",
    "hi_IN",
    "yo_NG",
    "tw_GH",
    "sw",
    "ka_GE",
    "hy_AM",
    "az_AZ",
)
PRIOR_NAMES = ("uniform", "auto")
REASONS = ("low-confidence", "out-of-scope")
COVERAGES = (0.8, 0.9, 0.95)
FORMAT_VERSION = 1  # of the trust layer's document in the checkpoint  # the coverages evaluate and the benchmark report


class TrustError(InputError):
    """A bad trust setting (coverage, prior, threshold); ``param`` and the message's first word name it."""


@dataclass
class TrustConfig:
    """What :func:`calibrate` fits, and how; the single source of its defaults."""

    methods: tuple[str, ...] = ("lac", "aps", "raps")  # conformal scores tried; the smallest sets at 0.9 win
    raps_lambda: float = 0.02  # RAPS: penalty per rank beyond raps_k
    raps_k: int = 1
    abstain_share: float = 0.05  # each default threshold sets aside this share of in-scope validation names
    oos_locales: tuple[str, ...] = OOS_LOCALES
    oos_fit_share: float = 0.5  # share of the out-of-scope names (by name hash) used to fit; the rest is held out
    smoothing: float = 2.0  # Dirichlet smoothing of the trigram models (back off to bigrams, then unigrams)
    background_smoothing: float = 8.0  # of the background (out-of-scope) trigram model, backing off to the shared one
    folds: int = 5  # cross-fitting of the out-of-scope names' background features
    l2: float = 1e-3  # ridge penalty of the out-of-scope logistic regression
    em_iterations: int = 200
    em_tolerance: float = 1e-7


@dataclass
class TrustResult:
    """The trust layer's answer for N names over C languages (arrays, one row a name)."""

    probabilities: np.ndarray  # (N, C) after temperature and prior
    out_of_scope: np.ndarray | None  # (N,) in [0, 1]; None without a detector
    abstained: np.ndarray  # (N,) bool
    reason: np.ndarray  # (N,) object: None | "low-confidence" | "out-of-scope"
    sets: np.ndarray | None  # (N, C) bool; None without coverage
    prior: np.ndarray | None  # (C,) the target prior used (estimated with "auto"); None without one


# ------------------------------------------------------------------------------------------- character trigrams

_SYMBOLS = string.ascii_lowercase + PUNCTUATION  # the alphabet, case folded
K = len(_SYMBOLS) + 3  # 0 padding, 1 start, 2 end, then the symbols
_CODE = np.zeros(256, dtype=np.int64)
for _i, _c in enumerate(_SYMBOLS):
    _CODE[ord(_c)] = _i + 3
    _CODE[ord(_c.upper())] = _i + 3


def _trigram_codes(names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each name's trigram indices ``(a K + b) K + c`` over ``^^name$`` (case folded) (N, T) and a mask (N, T)."""
    lengths = np.fromiter(map(len, names), dtype=np.int64, count=len(names))
    width = int(lengths.max(initial=0)) + 3
    seq = np.zeros((len(names), width), dtype=np.int64)  # (N, T + 3)
    seq[:, :2] = 1
    pos = np.arange(width)[None, :]
    inside = (pos >= 2) & (pos < lengths[:, None] + 2)
    seq[inside] = _CODE[np.frombuffer("".join(names).encode("ascii"), dtype=np.uint8)]
    seq[pos == lengths[:, None] + 2] = 2
    tri = (seq[:, :-2] * K + seq[:, 1:-1]) * K + seq[:, 2:]  # (N, T + 1)
    mask = np.arange(width - 2)[None, :] <= lengths[:, None]  # every letter and the end
    return tri, mask


def trigram_counts(names: Sequence[str], language: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How often each (language, trigram) occurs, sparse: keys ``language * K**3 + trigram`` and counts (M,)."""
    tri, mask = _trigram_codes(names)
    keys = (language[:, None] * K**3 + tri)[mask]
    unique, counts = np.unique(keys, return_counts=True)
    return unique, counts


def trigram_tables(
    keys: np.ndarray, counts: np.ndarray, n_languages: int, smoothing: float, background_smoothing: float
) -> np.ndarray:
    """log P(c | a b) (L + 2, K**3) float32 from sparse counts whose language index runs to L (L: the background
    names): one row per language, then all languages together, then the background. The shared model is
    Dirichlet-smoothed down to bigrams and unigrams; each language's and the background's back off to it."""
    n = np.bincount(keys, weights=counts, minlength=(n_languages + 1) * K**3).reshape(n_languages + 1, K, K, K)
    n, background = n[:-1], n[-1]
    n3 = n.sum(0)
    n2 = n3.sum(0)  # (b, c)
    n1 = n2.sum(0)  # (c,)
    p1 = (n1 + 1) / (n1 + 1).sum()
    p2 = (n2 + smoothing * p1[None, :]) / (n2.sum(1, keepdims=True) + smoothing)
    p3 = (n3 + smoothing * p2[None, :, :]) / (n3.sum(2, keepdims=True) + smoothing)  # (a, b, c)
    per = (n + smoothing * p3[None]) / (n.sum(3, keepdims=True) + smoothing)  # (L, a, b, c)
    bg = (background + background_smoothing * p3) / (background.sum(2, keepdims=True) + background_smoothing)
    return np.log(np.concatenate([per, p3[None], bg[None]]).reshape(n_languages + 2, -1)).astype(np.float32)


# ------------------------------------------------------------------------------------------- conformal sets


def _order_scores(probs: np.ndarray, method: str, lam: float, k_reg: int) -> np.ndarray:
    """The non-conformity score each language would have as the true one (N, C)."""
    if method == "lac":
        return 1.0 - probs
    order = np.argsort(-probs, axis=1, kind="stable")
    sorted_p = np.take_along_axis(probs, order, axis=1)
    cumulative = np.cumsum(sorted_p, axis=1)  # mass up to and including each rank
    if method == "raps":
        ranks = np.arange(1, probs.shape[1] + 1)[None, :]
        cumulative = cumulative + lam * np.maximum(0, ranks - k_reg)
    elif method != "aps":
        raise ValueError(f"conformal method {method!r}: expected lac, aps or raps")
    scores = np.empty_like(cumulative)
    np.put_along_axis(scores, order, cumulative, axis=1)
    return scores


def conformal_threshold(scores: np.ndarray, coverage: float) -> float:
    """The split-conformal threshold: the ``ceil((n + 1) C)``-th smallest calibration score (inf past n)."""
    n = len(scores)
    k = math.ceil((n + 1) * coverage)
    return float("inf") if k > n else float(np.sort(scores)[k - 1])


def prediction_sets(
    probs: np.ndarray, method: str, threshold: float, *, lam: float = 0.0, k_reg: int = 0
) -> np.ndarray:
    """(N, C) bool: the languages whose score is within the threshold, and always the top one."""
    sets = _order_scores(probs, method, lam, k_reg) <= threshold
    sets[np.arange(len(probs)), probs.argmax(1)] = True
    return sets


@dataclass
class Conformal:
    method: str
    scores: np.ndarray  # (n,) sorted calibration scores of the validation names' true languages
    lam: float = 0.0
    k_reg: int = 0

    def sets(self, probs: np.ndarray, coverage: float) -> np.ndarray:
        return prediction_sets(
            probs, self.method, conformal_threshold(self.scores, coverage), lam=self.lam, k_reg=self.k_reg
        )

    @classmethod
    def fit(cls, probs: np.ndarray, truth: np.ndarray, config: TrustConfig) -> Conformal:
        """Try each method of ``config.methods`` and keep the smallest mean set at coverage 0.9."""
        best, best_size = None, math.inf
        rows = np.arange(len(truth))
        for method in config.methods:
            lam, k_reg = (config.raps_lambda, config.raps_k) if method == "raps" else (0.0, 0)
            scores = np.sort(_order_scores(probs, method, lam, k_reg)[rows, truth])
            candidate = cls(method, scores, lam, k_reg)
            size = float(candidate.sets(probs, 0.9).sum(1).mean())
            log.info("conformal %s: mean set size %.3f at coverage 0.9 on validation", method, size)
            if size < best_size:
                best, best_size = candidate, size
        return best


# ------------------------------------------------------------------------------------------- target priors


def model_prior_from(
    valid_probs: np.ndarray,
    valid_mix: np.ndarray,
    real_probs: np.ndarray | None = None,
    real_language: np.ndarray | None = None,
    *,
    iterations: int = 1000,
    tolerance: float = 1e-9,
) -> np.ndarray:
    """The model's own language mix (C,): the base Bayes' rule re-weights against (:attr:`Trust.prior_base`).
    From the labelled validation names alone (``valid_probs`` (N, C), calibrated), their mean probability. With
    a corpus's scored validation names (``real_probs`` (M, C), ``real_language`` (M,) their top languages) the
    base is the one under which the model's answers, re-weighted to each validation's own mix, average to that
    mix (the moment condition of Saerens et al.'s EM, solved for the base instead of the mix): on the corpus's
    names for the languages they hold, on the labelled names (``valid_mix`` (C,), their training mix) for the
    rest. Real names of a language then get answers under an even mix in the proportion real names of that
    language have, not labelled names: the two disagree where the labelled data's names are not the
    population's (the tutorial's Spanish, Portuguese and Arabic)."""
    base = valid_probs.mean(0).astype(np.float64)
    if real_probs is None or not len(real_probs):
        return base
    n = valid_probs.shape[1]
    real_mix = np.bincount(real_language, minlength=n).astype(np.float64)
    real_mix /= real_mix.sum()
    held = real_mix > 0
    rest = ~held & (valid_mix > 0)
    base = np.maximum(base, 1e-12)
    for _ in range(iterations):
        old = base.copy()
        base[held] *= reweight(real_probs, base, real_mix).mean(0)[held] / real_mix[held]
        if rest.any():
            base[rest] *= reweight(valid_probs, base, valid_mix).mean(0)[rest] / valid_mix[rest]
        base = np.maximum(base / base.sum(), 1e-12)
        if np.abs(base - old).max() < tolerance:
            break
    return base / base.sum()


def reweight(probs: np.ndarray, base: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Bayes' rule for a new language mix: ``p'(c|x) ∝ p(c|x) target(c) / base(c)`` (N, C), ``base`` the mix
    the probabilities were made for (:attr:`Trust.prior_base`)."""
    w = target / np.maximum(base, 1e-12)
    out = probs * w[None, :]
    return out / np.maximum(out.sum(1, keepdims=True), 1e-300)


#: The Dirichlet prior of ``prior="auto"``: the model's own mix counts as this many distinct names of evidence a
#: language, so that EM on a handful of names stays near it and a large input decides (18 languages: 3 names
#: weigh 3 %, 30 names 25 %, 3,000 names 97 %).
PRIOR_PSEUDO_NAMES = 5.0


def pseudo_names(n_languages: int) -> float:
    """How many names of evidence the model's own mix counts for in ``prior="auto"``."""
    return PRIOR_PSEUDO_NAMES * n_languages


def estimate_prior(
    probs: np.ndarray,
    base: np.ndarray,
    *,
    start: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    iterations: int = 200,
    tolerance: float = 1e-7,
    strength: float | None = None,
) -> np.ndarray:
    """The input's own language mix by EM (Saerens, Latinne & Decaestecker, 2002): alternately re-weight the
    probabilities (whose own prior is ``base``) with the current mix and take their mean as the next mix,
    from ``start`` (default ``base``). ``weights`` (N,): how many names each row stands for (distinct names
    with their counts give the same mix as every name). The estimate is the posterior mode under a Dirichlet
    prior centred on ``start`` worth ``strength`` names (default :func:`pseudo_names`): each M step mixes the
    names' mean with ``start`` as N : ``strength``, N the number of rows (distinct names: a name repeated is no
    new evidence)."""
    centre = (base if start is None else start).astype(np.float64)
    prior = centre.copy()
    if len(probs) == 0:
        return prior
    strength = pseudo_names(probs.shape[1]) if strength is None else strength
    share = len(probs) / (len(probs) + strength)  # of the evidence that is the names'
    for _ in range(iterations):
        new = share * np.average(reweight(probs, base, prior), axis=0, weights=weights) + (1 - share) * centre
        done = np.abs(new - prior).max() < tolerance
        prior = new
        if done:
            break
    return prior


def read_prior_file(path: str | Path, labels: Sequence[str]) -> dict[str, float]:
    """``{language: weight}`` from a JSON object or a two-column CSV/TSV (a header row is allowed)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is dropped
    except (OSError, UnicodeDecodeError) as e:
        raise TrustError(f"prior {path}: cannot be read ({e})", param="prior") from None
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise TrustError(f"prior {path}: not valid JSON ({e.msg} at line {e.lineno})", param="prior") from None
        if not isinstance(doc, dict):
            raise TrustError(f"prior {path}: expected a JSON object of language: weight", param="prior")
        return doc
    out: dict[str, float] = {}
    lines = text.splitlines()
    delimiter = "\t" if lines and "\t" in lines[0] else ","
    for lineno, row in enumerate(csv.reader(lines, delimiter=delimiter), 1):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2:
            raise TrustError(f"prior {path}:{lineno}: expected language,weight, got {row!r}", param="prior")
        language, weight = row[0].strip(), row[1].strip()
        if lineno == 1 and language not in labels:
            try:
                float(weight)
            except ValueError:
                continue  # a header row
        out[language] = weight
    return out


def prior_vector(weights: Mapping[str, object], labels: Sequence[str], *, source: str = "prior") -> np.ndarray:
    """Weights by language -> a (C,) distribution; languages left out get 0. Unknown languages, weights that
    are not finite numbers, negative weights or a zero sum raise :class:`TrustError`."""
    unknown = sorted(set(weights) - set(labels))
    if unknown:
        raise TrustError(
            f"{source}: unknown language(s) {', '.join(map(repr, unknown))}; the model knows {', '.join(labels)}",
            param="prior",
        )
    vector = np.zeros(len(labels))
    for i, language in enumerate(labels):
        value = weights.get(language, 0.0)
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise TrustError(f"{source}: weight of {language} is {value!r}, not a number", param="prior") from None
        if not math.isfinite(value) or value < 0:
            raise TrustError(
                f"{source}: weight of {language} is {value}; weights must be finite and >= 0", param="prior"
            )
        vector[i] = value
    if vector.max() <= 0:
        raise TrustError(f"{source}: the weights sum to 0; give at least one language a positive weight", param="prior")
    vector = vector / vector.max()  # first to at most 1, so that huge weights cannot overflow the sum
    return vector / vector.sum()


class _Training:
    """``prior="training"`` resolved: the model's own mix (no re-weighting, whatever its default mix is)."""

    def __repr__(self) -> str:
        return "training"


TRAINING = _Training()


def resolve_prior(spec, labels: Sequence[str]):
    """``None``, ``"uniform"``, ``"auto"``, ``"training"``, a mapping of weights, a (C,) array, or a path to a
    JSON/CSV file -> ``None``, ``"auto"``, :data:`TRAINING` or a (C,) distribution. Raises :class:`TrustError`
    naming what is wrong."""
    if spec is None:
        return None
    if spec is TRAINING or (isinstance(spec, str) and spec == "training"):
        return TRAINING
    if isinstance(spec, str):
        if spec == "uniform":
            return np.full(len(labels), 1.0 / len(labels))
        if spec == "auto":
            return "auto"
        if Path(spec).is_file():
            return prior_vector(read_prior_file(spec, labels), labels, source=f"prior {spec}")
        raise TrustError(
            f"prior {spec!r}: expected uniform, auto, training, or a JSON/CSV file of language,weight (no such file)",
            param="prior",
        )
    if isinstance(spec, Mapping):
        return prior_vector(spec, labels)
    vector = np.asarray(spec, dtype=np.float64)
    if vector.shape != (len(labels),):
        raise TrustError(f"prior: expected {len(labels)} weights, got shape {vector.shape}", param="prior")
    return prior_vector(dict(zip(labels, vector.tolist(), strict=True)), labels)


# ------------------------------------------------------------------------------------------- out-of-scope score


def _entropy(probs: np.ndarray) -> np.ndarray:
    return -(probs * np.log(np.clip(probs, 1e-12, 1))).sum(1)


@dataclass
class OutOfScope:
    """A logistic regression over features of a name and of its probabilities; higher = less like any of the
    model's languages. Its character trigram models (one per language, one of all training names, and a
    background one of the out-of-scope names it was fitted against) are rebuilt from sparse counts."""

    keys: np.ndarray  # (M,) language * K**3 + trigram; language L (= n_languages) is the background
    counts: np.ndarray  # (M,)
    n_languages: int
    smoothing: float
    background_smoothing: float
    mean: np.ndarray  # (F,) feature standardisation
    std: np.ndarray
    coef: np.ndarray  # (F,)
    bias: float
    columns: np.ndarray = field(init=False, repr=False)  # (K**3, L + 2) log P(c | a b), a row a trigram

    BLOCK = 2048  # names whose trigram log-probabilities :meth:`features` gathers at once
    FEATURES = (
        "trigram surprise, all languages",
        "worst character's surprise, all languages",
        "trigram surprise, best-fitting language",
        "trigram surprise, top language",
        "trigram surprise, background",
        "top probability",
        "entropy",
    )

    def __post_init__(self):
        self.columns = np.ascontiguousarray(
            trigram_tables(self.keys, self.counts, self.n_languages, self.smoothing, self.background_smoothing).T
        )

    def surprise(self, folded: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each of the (non-empty) ``folded`` names' mean surprise per character (-log P) under each of the L + 2
        trigram tables (the languages', all training names', the background's) as (L + 2, N); its surprise at its
        worst character under all training names' trigrams (N,); how many characters were scored (N,)."""
        tri, mask = _trigram_codes(folded)
        per_char = mask.sum(1)  # (N,) every name has at least its end
        # each trigram's log-probabilities under the L + 2 tables, gathered by torch as (rows, T, L + 2), a block
        # of rows at a time (it stays in the cache; every block as wide as the widest name, so each row's sum
        # adds the same terms in the same order whatever the block); padding set to 0, which no sum notices and
        # no minimum picks (a real log-probability is below 0)
        columns, sums, worst = torch.from_numpy(self.columns), [], []
        for start in range(0, len(folded), self.BLOCK):
            logp = columns[torch.from_numpy(tri[start : start + self.BLOCK])]
            logp.masked_fill_(~torch.from_numpy(mask[start : start + self.BLOCK])[..., None], 0.0)
            sums.append(logp.sum(1))
            worst.append(logp[..., -2].amin(1))
        mean = (-torch.cat(sums).numpy().astype(np.float64) / per_char[:, None]).T  # (L + 2, N) mean surprise
        return mean, -torch.cat(worst).numpy().astype(np.float64), per_char

    def features_from(self, mean: np.ndarray, worst: np.ndarray, probs: np.ndarray) -> np.ndarray:
        """(N, F) from :meth:`surprise`'s first two and the names' probabilities (N, C)."""
        top = probs.argmax(1)
        languages = mean[: self.n_languages]
        return np.stack(
            [
                mean[-2],
                worst,
                languages.min(0),
                languages[top, np.arange(len(top))],
                mean[-1],
                probs.max(1),
                _entropy(probs),
            ],
            axis=1,
        )

    def features(self, probs: np.ndarray, folded: Sequence[str]) -> np.ndarray:
        """(N, F): mean surprise per character (-log P) under all training names' trigrams, at the worst
        character, under the best-fitting language's, the top language's and the background's trigrams; the
        top probability; the entropy."""
        if not len(folded):
            return np.zeros((0, len(self.FEATURES)))
        mean, worst, _ = self.surprise(folded)
        return self.features_from(mean, worst, probs)

    def score(self, probs: np.ndarray, folded: Sequence[str]) -> np.ndarray:
        # a feature constant on the fitting names (a degenerate model's top probability) is stored with std 0
        # once rounded: scaled by 1, as a standard scaler does, not divided into inf and NaN
        std = np.where(self.std > 0, self.std, 1.0)
        z = (self.features(probs, folded) - self.mean) / std
        return 1.0 / (1.0 + np.exp(-(z @ self.coef + self.bias)))

    @classmethod
    def unfitted(
        cls, keys: np.ndarray, counts: np.ndarray, n_languages: int, background: Sequence[str], *, config: TrustConfig
    ) -> OutOfScope:
        """The trigram models of the training names' ``keys``/``counts`` and of ``background`` (out-of-scope
        names), its regression not fitted yet: what :meth:`features` needs."""
        bg_keys, bg_counts = trigram_counts(background, np.full(len(background), n_languages))
        f = len(cls.FEATURES)
        return cls(
            np.concatenate([keys, bg_keys]),
            np.concatenate([counts, bg_counts]),
            n_languages,
            config.smoothing,
            config.background_smoothing,
            np.zeros(f),
            np.ones(f),
            np.zeros(f),
            0.0,
        )

    @classmethod
    def fit(
        cls,
        keys: np.ndarray,
        counts: np.ndarray,
        n_languages: int,
        in_probs: np.ndarray,
        in_names: Sequence[str],
        out_probs: np.ndarray,
        out_names: Sequence[str],
        *,
        config: TrustConfig,
    ) -> OutOfScope:
        """Fit on in-scope names (label 0) against out-of-scope names (label 1), the two classes weighted equally.
        ``keys``/``counts`` hold the training names' trigrams; the out-of-scope names' are added as the
        background. Their own features are cross-fitted: each fold's background leaves that fold out."""
        f = len(cls.FEATURES)

        def model(names: Sequence[str]) -> OutOfScope:
            return cls.unfitted(keys, counts, n_languages, names, config=config)

        full = model(out_names)
        fold = (np.array([hash_share(n) for n in out_names]) * config.folds * 1000).astype(int) % config.folds
        out_x = np.zeros((len(out_names), f))
        for k in range(config.folds):
            rest = [n for n, g in zip(out_names, fold, strict=True) if g != k]
            mine = np.flatnonzero(fold == k)
            out_x[mine] = model(rest).features(out_probs[mine], [out_names[i] for i in mine])
        x = np.concatenate([full.features(in_probs, in_names), out_x])
        y = np.concatenate([np.zeros(len(in_names)), np.ones(len(out_names))])
        full.mean, full.std = x.mean(0), x.std(0) + 1e-9
        weights = np.where(y == 1, 0.5 / len(out_names), 0.5 / len(in_names))
        full.coef, full.bias = _logistic_regression((x - full.mean) / full.std, y, weights, l2=config.l2)
        return full


def _logistic_regression(x: np.ndarray, y: np.ndarray, weights: np.ndarray, *, l2: float) -> tuple[np.ndarray, float]:
    """Weighted, ridge-penalised logistic regression by L-BFGS: coefficients (F,) and bias."""
    xt, yt, wt = (torch.as_tensor(a, dtype=torch.float64) for a in (x, y, weights))
    w = torch.zeros(x.shape[1] + 1, dtype=torch.float64, requires_grad=True)

    def loss() -> torch.Tensor:
        logits = xt @ w[:-1] + w[-1]
        value = (wt * torch.nn.functional.binary_cross_entropy_with_logits(logits, yt, reduction="none")).sum()
        return value + l2 * (w[:-1] ** 2).sum()

    minimize(loss, [w], lr=1, max_iter=200)
    coef = w.detach().numpy()
    return coef[:-1].copy(), float(coef[-1])


def faker_surnames(locales: Sequence[str] = OOS_LOCALES) -> list[str]:
    """Distinct folded surnames of Faker's person providers for ``locales`` (raises ImportError without Faker)."""
    import importlib

    from .text import MAX_NAME_CHARS, fold

    importlib.import_module("faker")
    names: dict[str, None] = {}
    for locale in locales:
        try:
            provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        except ImportError:
            log.warning("faker has no person provider for locale %s; skipped", locale)
            continue
        for attr in ("last_names", "last_names_male", "last_names_female"):
            for raw in getattr(provider, attr, None) or ():
                folded = fold(raw)
                if folded and len(folded) <= MAX_NAME_CHARS:
                    names.setdefault(folded)
    return list(names)


def hash_share(name: str) -> float:
    """A name's fixed place in [0, 1): splits out-of-scope names into fit and held-out parts by name alone."""
    return int.from_bytes(hashlib.sha256(name.lower().encode()).digest()[:8], "big") / 2**64


def out_of_scope_names(
    exclude: Sequence[str] = (), *, part: str = "held-out", fit_share: float = 0.5, locales: Sequence[str] = OOS_LOCALES
) -> list[str]:
    """Faker surnames of :data:`OOS_LOCALES`, folded, less any name in ``exclude`` (case-insensitive); ``part``
    ``"fit"`` (hash share below ``fit_share``), ``"held-out"`` (the rest) or ``"all"``."""
    excluded = {n.lower() for n in exclude}
    names = [n for n in faker_surnames(locales) if n.lower() not in excluded]
    if part == "all":
        return names
    if part not in {"fit", "held-out"}:
        raise ValueError(f"part {part!r}: expected fit, held-out or all")
    return [n for n in names if (hash_share(n) < fit_share) == (part == "fit")]


def with_real_out_of_scope(faker: list[str], real: Sequence[str], seen: Sequence[str]) -> list[str]:
    """The names a detector is fitted against: Faker's (``faker``, from :func:`out_of_scope_names`) and a
    corpus's real out-of-scope names (``real``) less the model's training and validation names (``seen``,
    compared without case), sorted; Faker's alone, as they are, without real ones."""
    if not real:
        return faker
    taken = {n.lower() for n in seen}
    return sorted(set(faker) | {n for n in real if n.lower() not in taken})


# ------------------------------------------------------------------------------------------- the layer


@dataclass
class Trust:
    """The trust layer of one model. Every part but the temperature may be missing (older checkpoints)."""

    labels: list[str]
    temperature: float = 1.0
    train_prior: np.ndarray | None = None  # (C,) training label distribution
    model_prior: np.ndarray | None = None  # (C,) mean calibrated probability on validation: Bayes' rule's base
    # (C,) the language mix answers are given under when no prior is asked for (None: the model's own);
    # prior="training" asks for the model's own
    default_prior: np.ndarray | None = None
    conformal: Conformal | None = None
    oos: OutOfScope | None = None
    min_confidence: float | None = None  # default abstention thresholds, chosen on validation
    max_out_of_scope: float | None = None
    info: dict = field(default_factory=dict)  # what was fitted on what (validation sizes, locales, ECE...)
    _noted: set = field(default_factory=set, repr=False, compare=False)  # notes already logged (once each)

    def _note_once(self, message: str) -> None:
        if message not in self._noted:
            self._noted.add(message)
            log.warning(message)

    @property
    def complete(self) -> bool:
        return self.train_prior is not None and self.conformal is not None

    @property
    def prior_base(self) -> np.ndarray | None:
        """What the model's probabilities say of the language mix on average: Bayes' rule re-weights against
        it (the model's own prior; the training label distribution for checkpoints that lack it)."""
        return self.model_prior if self.model_prior is not None else self.train_prior

    def estimate_prior(self, probs: np.ndarray, *, weights: np.ndarray | None = None) -> np.ndarray:
        """The language mix of calibrated ``probs`` (N, C) by EM, from the training mix."""
        return estimate_prior(probs, self.prior_base, start=self.train_prior, weights=weights)

    def probabilities(self, log_probs) -> np.ndarray:
        """Temperature-scaled probabilities (N, C), float64."""
        lp = torch.as_tensor(log_probs).double() / self.temperature
        return torch.softmax(lp, dim=1).numpy()

    def apply(self, log_probs, folded: Sequence[str], **options) -> TrustResult:
        """The whole layer on a batch: ``log_probs`` (N, C) from the model, the N folded names; ``options``
        (``coverage``, ``prior``, ``min_confidence``, ``max_out_of_scope``, ``counts``) as :meth:`decide` takes
        them."""
        calibrated = self.probabilities(log_probs)  # (N, C)
        oos = self.oos.score(calibrated, folded) if self.oos is not None and len(calibrated) else None
        return self.decide(calibrated, oos, **options)

    def decide(
        self,
        calibrated: np.ndarray,
        oos: np.ndarray | None,
        *,
        coverage: float | None = None,
        prior=None,
        min_confidence: float | None = None,
        max_out_of_scope: float | None = None,
        counts: np.ndarray | None = None,
    ) -> TrustResult:
        """The layer after calibration: ``calibrated`` probabilities (N, C) over this layer's languages whose
        own mix is :attr:`prior_base` (a model's, or an answer combined from several under that mix), and their
        out-of-scope scores ``oos`` (N,) or None. ``prior`` as :func:`resolve_prior` takes it; thresholds left
        None use the checkpoint's defaults; ``counts`` (N,): how many input rows each (distinct) name stands
        for, so that ``prior="auto"`` weighs the names as the input does."""
        check_coverage(coverage)
        for param, value in (("min_confidence", min_confidence), ("max_out_of_scope", max_out_of_scope)):
            if value is not None and not 0 <= value <= 1:
                raise TrustError(f"{param} {value}: expected a number from 0 to 1", param=param)
        probs, used_prior = calibrated, None
        if prior is None and self.default_prior is not None:
            prior = self.default_prior
        target = resolve_prior(prior, self.labels)
        if target is TRAINING:
            target = None
        if target is not None and self.train_prior is None:
            self._note_once(
                "this checkpoint records no training prior (trained before the trust layer): the prior is not applied"
            )
        elif target is not None:
            used_prior = self.estimate_prior(calibrated, weights=counts) if isinstance(target, str) else target
            probs = reweight(calibrated, self.prior_base, used_prior)
        sets = None
        if coverage is not None:
            if self.conformal is None:
                self._note_once(
                    "this checkpoint has no conformal calibration (trained before the trust layer, "
                    "or without validation names): no prediction sets"
                )
            else:
                sets = self.conformal.sets(probs, coverage)
        n = len(probs)
        min_conf = self.min_confidence if min_confidence is None else min_confidence
        max_oos = self.max_out_of_scope if max_out_of_scope is None else max_out_of_scope
        low = probs.max(1) < min_conf if min_conf is not None else np.zeros(n, dtype=bool)
        far = oos > max_oos if oos is not None and max_oos is not None else np.zeros(n, dtype=bool)
        reason = np.full(n, None, dtype=object)
        reason[low] = "low-confidence"
        reason[far] = "out-of-scope"
        return TrustResult(
            probabilities=probs, out_of_scope=oos, abstained=low | far, reason=reason, sets=sets, prior=used_prior
        )

    # ---------------------------------------------------------------------------- storage

    TENSORS = ("trust.trigram_keys", "trust.trigram_counts")

    def to_meta(self) -> tuple[dict, dict[str, torch.Tensor]]:
        """The JSON document for the checkpoint's metadata, and the tensors for its weights file."""
        doc: dict = {
            "version": FORMAT_VERSION,
            "temperature": self.temperature,
            "info": self.info,
            "train_prior": _rounded(self.train_prior),
            "model_prior": _rounded(self.model_prior),
            "default_prior": _rounded(self.default_prior),
            "min_confidence": self.min_confidence,
            "max_out_of_scope": self.max_out_of_scope,
            "conformal": None,
            "out_of_scope": None,
        }
        tensors: dict[str, torch.Tensor] = {}
        if self.conformal is not None:
            c = self.conformal
            doc["conformal"] = {"method": c.method, "lambda": c.lam, "k_reg": c.k_reg, "scores": _rounded(c.scores)}
        if self.oos is not None:
            o = self.oos
            doc["out_of_scope"] = {
                "features": list(OutOfScope.FEATURES),
                "mean": _rounded(o.mean),
                "std": _rounded(o.std),
                "coef": _rounded(o.coef),
                "bias": o.bias,
                "smoothing": o.smoothing,
                "background_smoothing": o.background_smoothing,
                "tensors": list(self.TENSORS),
            }
            tensors[self.TENSORS[0]] = torch.from_numpy(o.keys.astype(np.int32))
            tensors[self.TENSORS[1]] = torch.from_numpy(o.counts.astype(np.int32))
        return doc, tensors

    @classmethod
    def from_checkpoint(
        cls, labels: Sequence[str], meta: dict, tensors: Mapping[str, torch.Tensor], *, source: str = "checkpoint"
    ) -> Trust:
        """The layer stored in a checkpoint; for an older one, only its temperature, with a logged note."""
        doc = meta.get("trust")
        temperature = float(meta.get("temperature") or 1.0)
        if doc is not None and not isinstance(doc, dict):
            raise TrustError(f"{source}: its trust layer is {type(doc).__name__}, not an object")
        if not isinstance(doc, dict):
            log.info(
                "%s has no trust layer (trained before it existed): answers carry no out-of-scope score, "
                "no prediction sets and no default abstention; retrain to get them",
                source,
            )
            return cls(labels=list(labels), temperature=temperature)
        try:
            return cls._from_doc(labels, _checked_doc(doc, len(labels)), tensors, temperature, source)
        except (KeyError, TypeError, ValueError) as e:  # present but invalid: refused, never silently skipped
            raise TrustError(f"{source}: its trust layer is invalid ({type(e).__name__}: {e})") from None

    @classmethod
    def _from_doc(
        cls, labels: Sequence[str], doc: dict, tensors: Mapping[str, torch.Tensor], temperature: float, source: str
    ) -> Trust:
        if doc.get("version") != FORMAT_VERSION:
            raise ValueError(f"trust layer version {doc.get('version')!r}, this nameorigin reads {FORMAT_VERSION}")
        conformal = oos = None
        if doc.get("conformal"):
            c = doc["conformal"]
            conformal = Conformal(
                c["method"], np.asarray(c["scores"], dtype=np.float64), float(c["lambda"]), int(c["k_reg"])
            )
        if doc.get("out_of_scope"):
            o = doc["out_of_scope"]
            if not all(name in tensors for name in cls.TENSORS):
                log.warning("%s: the out-of-scope detector's tables are missing; no out-of-scope score", source)
            else:
                keys, counts = (tensors[name].long().numpy() for name in cls.TENSORS)
                oos = OutOfScope(
                    keys,
                    counts,
                    len(labels),
                    float(o["smoothing"]),
                    float(o["background_smoothing"]),
                    *(np.asarray(o[k], dtype=np.float64) for k in ("mean", "std", "coef")),
                    float(o["bias"]),
                )
                if oos.coef.shape != (len(OutOfScope.FEATURES),):
                    raise ValueError(
                        f"out-of-scope detector of {len(oos.coef)} features, expected {len(OutOfScope.FEATURES)}"
                    )
        priors = {}
        for key in ("train_prior", "model_prior", "default_prior"):  # absent from the first trust layers
            prior = doc.get(key)
            if prior is not None and len(prior) != len(labels):
                raise ValueError(f"{key} of {len(prior)} languages, the model has {len(labels)}")
            priors[key] = np.asarray(prior, dtype=np.float64) if prior is not None else None
        return cls(
            labels=list(labels),
            temperature=float(doc.get("temperature") or temperature),
            **priors,
            conformal=conformal,
            oos=oos,
            min_confidence=doc.get("min_confidence"),
            max_out_of_scope=doc.get("max_out_of_scope"),
            info=doc.get("info") or {},
        )


def _finite(value, what: str, low: float, high: float, *, low_open: bool = False) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value > high
        or (value <= low if low_open else value < low)
    ):
        raise ValueError(f"{what} is {value!r}, not a number in {'(' if low_open else '['}{low:g}, {high:g}]")
    return float(value)


def _finite_list(values, what: str, n: int | None = None, *, low: float = -math.inf) -> None:
    if not isinstance(values, list) or (n is not None and len(values) != n):
        raise ValueError(f"{what} is not a list{f' of {n} numbers' if n is not None else ''}")
    for i, v in enumerate(values):
        _finite(v, f"{what}[{i}]", low, math.inf if low == -math.inf else 1e300)


def _checked_doc(doc: dict, n_labels: int) -> dict:
    """The trust layer's document with every value it is built from checked (types, ranges, finiteness)."""
    if doc.get("temperature") is not None:
        _finite(doc["temperature"], "temperature", 0, 1e6, low_open=True)
    for key in ("min_confidence", "max_out_of_scope"):
        if doc.get(key) is not None:
            _finite(doc[key], key, 0, 1)
    for key in ("train_prior", "model_prior", "default_prior"):
        if doc.get(key) is not None:
            _finite_list(doc[key], key, n_labels, low=0)
            if not sum(doc[key]) > 0:
                raise ValueError(f"{key} sums to 0")
    if doc.get("info") is not None and not isinstance(doc["info"], dict):
        raise ValueError("info is not an object")
    c = doc.get("conformal")
    if c:
        if not isinstance(c, dict) or not isinstance(c.get("method"), str):
            raise ValueError("conformal is not an object with a method")
        _finite_list(c.get("scores"), "conformal.scores")
        _finite(c.get("lambda"), "conformal.lambda", 0, 1e6)
        _finite(c.get("k_reg"), "conformal.k_reg", 0, 1e6)
    o = doc.get("out_of_scope")
    if o:
        if not isinstance(o, dict):
            raise ValueError("out_of_scope is not an object")
        for key in ("mean", "std", "coef"):
            _finite_list(o.get(key), f"out_of_scope.{key}", len(OutOfScope.FEATURES))
        for key in ("smoothing", "background_smoothing"):
            _finite(o.get(key), f"out_of_scope.{key}", 0, 1e6, low_open=True)
        _finite(o.get("bias"), "out_of_scope.bias", -1e6, 1e6)
    return doc


def _rounded(a: np.ndarray | None, digits: int = 7) -> list[float] | None:
    return None if a is None else [round(float(x), digits) for x in a]


def check_coverage(coverage: float | None) -> None:
    if coverage is not None and not (isinstance(coverage, (int, float)) and 0 < coverage < 1):
        raise TrustError(
            f"coverage {coverage!r}: expected a number between 0 and 1 (exclusive), e.g. 0.9", param="coverage"
        )


def calibrate(
    model,
    labels: Sequence[str],
    train_pairs: Sequence[tuple[str, str]],
    valid_pairs: Sequence[tuple[str, str]],
    *,
    config: TrustConfig | None = None,
    out_of_scope: Sequence[str] = (),
    real_train: Sequence[tuple[str, str]] = (),
    real_valid: Sequence[tuple[str, str]] = (),
) -> Trust:
    """Fit the whole layer for a trained ``model``: the temperature, the conformal scores, the training prior,
    the out-of-scope detector (skipped, with a logged note, when Faker is not installed and no ``out_of_scope``
    names are given) and the default abstention thresholds, all on ``valid_pairs`` (never the test names).
    ``out_of_scope``: real surnames of other languages (a corpus's) that join Faker's for the detector.
    ``real_train`` and ``real_valid``: a corpus's in-scope training and validation names with their top language:
    the first join the detector's character trigram models, the second its in-scope side (beside
    ``valid_pairs``) and the names the out-of-scope threshold is chosen on, so that the detector learns real
    names of the model's languages against real names of others. The temperature, the sets and the
    low-confidence threshold stay fitted on ``valid_pairs`` alone."""
    from .data import encode_names, encode_pairs
    from .evaluation import expected_calibration_error, fit_temperature
    from .models import batched_log_probs

    config = config or TrustConfig()
    index = {lang: i for i, lang in enumerate(labels)}
    language = np.array([index[lang] for _, lang in train_pairs], dtype=np.int64)
    per_language = np.bincount(language, minlength=len(labels)).astype(np.float64)
    train_prior = per_language / per_language.sum()
    if not valid_pairs:
        log.warning(
            "no validation names: the trust layer keeps only the training prior (no temperature, sets, "
            "out-of-scope score or abstention thresholds)"
        )
        return Trust(labels=list(labels), train_prior=train_prior)
    valid = encode_pairs(valid_pairs, labels)
    lp, _ = batched_log_probs(model, valid.tokens, valid.lengths)
    truth = valid.labels.numpy()
    temperature = fit_temperature(lp, valid.labels)
    trust = Trust(labels=list(labels), temperature=temperature, train_prior=train_prior)
    probs = trust.probabilities(lp)
    real_valid = [(n, lang) for n, lang in real_valid if lang in index]
    real = encode_pairs(real_valid, labels) if real_valid else None
    real_probs = trust.probabilities(batched_log_probs(model, real.tokens, real.lengths)[0]) if real else None
    trust.model_prior = model_prior_from(probs, train_prior, real_probs, real.labels.numpy() if real else None)
    trust.info = {
        "n_valid": len(valid_pairs),
        "model_prior_from": "validation and corpus validation" if real_valid else "validation",
        "valid_ece_before": expected_calibration_error(lp.softmax(1), valid.labels),
        "valid_ece_after": expected_calibration_error(torch.from_numpy(probs), valid.labels),
    }
    trust.conformal = Conformal.fit(probs, truth, config)
    trust.info["conformal_method"] = trust.conformal.method
    valid_names = [n for n, _ in valid_pairs]
    # never call an answer whose language is likelier than all others together unsure
    trust.min_confidence = min(float(np.quantile(probs.max(1), config.abstain_share)), 0.5)
    try:
        out_names = out_of_scope_names(
            [n for n, _ in train_pairs] + valid_names,
            part="fit",
            fit_share=config.oos_fit_share,
            locales=config.oos_locales,
        )
    except ImportError:
        if not out_of_scope:
            log.warning(
                "Faker is not installed: no out-of-scope detector in this checkpoint (%s, and retrain to get one)",
                install_hint("trust"),
            )
            return trust
        out_names = []
    n_faker = len(out_names)
    out_names = with_real_out_of_scope(out_names, out_of_scope, [n for n, _ in train_pairs] + valid_names)
    tokens, lengths = encode_names(out_names)
    out_lp, _ = batched_log_probs(model, tokens, lengths)
    real_train = [(n, lang) for n, lang in real_train if lang in index]
    keys, counts = trigram_counts(
        [n for n, _ in train_pairs] + [n for n, _ in real_train],
        np.concatenate([language, np.array([index[lang] for _, lang in real_train], dtype=np.int64)]),
    )
    in_names, in_probs = valid_names, probs
    if real_valid:
        in_names = valid_names + [n for n, _ in real_valid]
        in_probs = np.concatenate([probs, real_probs])
    trust.oos = OutOfScope.fit(
        keys, counts, len(labels), in_probs, in_names, trust.probabilities(out_lp), out_names, config=config
    )
    # and never call a name out of scope that the (class-balanced) detector finds likelier in scope than not
    trust.max_out_of_scope = max(float(np.quantile(trust.oos.score(in_probs, in_names), 1 - config.abstain_share)), 0.5)
    trust.info.update(
        {
            "oos_locales": list(config.oos_locales),
            "n_oos_fit": len(out_names),
            "n_oos_fit_faker": n_faker,
            "n_oos_fit_real": len(out_names) - n_faker,
            "n_in_scope_real_train": len(real_train),
            "n_in_scope_real_valid": len(real_valid),
            "abstain_share": config.abstain_share,
        }
    )
    return trust
