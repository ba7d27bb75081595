"""The nearest peer's prediction pipeline (ethnicolr2) against nameorigin's on the same names, in one run.

    pip install --no-deps ethnicolr2==0.3.3 && pip install huggingface-hub   # beside [dev]; see below
    python bench/ethnicolr2_speed.py [--data DIR] [--names 100000]

ethnicolr2's weights live on the Hugging Face Hub, which this machine cannot reach, so its census last-name
model is built with random weights of its published shape (``ethnicolr2.models.LSTM``: an embedding and a
2-layer LSTM of hidden 256, 5 categories, names cut or padded to 15 characters, the constants of
``ethnicolr2.ethnicolr_class``) and a character vocabulary fitted on the names sent (the vocabulary's size only
changes the embedding table). Speed does not depend on the weights. Its whole pipeline is timed as a user calls
it, ``pred_census_last_name(df, "name")`` (pandas, its Dataset and DataLoader, the model, a dictionary of
probabilities per name), against nameorigin's ``predict_frame(df)`` (folding, the model, top 3, the trust
columns) with the bundled model and an untrained gru 128, on the same DataFrame, with the same torch threads.
Two samples, as ``bench/cli_speed.py``: Zipf-like repeats of real names, and all-distinct names.

``--no-deps``: ethnicolr2 0.3.3 pins exact versions of joblib, tqdm and scikit-learn that are older than the
ones nameorigin's environment holds; its code runs with the newer ones, and the pins would downgrade them.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale_common import gru128_checkpoint, real_names, two_samples

try:
    import joblib
    import pandas as pd
    from sklearn.feature_extraction.text import CountVectorizer
except ImportError as e:
    raise SystemExit(
        f"bench/ethnicolr2_speed.py needs pandas, scikit-learn and joblib ({e}): "
        'pip install -c constraints.txt -e ".[dev]"'
    ) from None

from nameorigin import Predictor, predict_frame


def random_ethnicolr2_model(folder: Path, names: list[str]) -> None:
    """The census last-name model's two files with random weights of the published shape, where
    ``ETHNICOLR2_MODEL_DIR`` makes ethnicolr2 look first."""
    from ethnicolr2.ethnicolr_class import HIDDEN_SIZE, NUM_LAYERS
    from ethnicolr2.models import LSTM

    vectorizer = CountVectorizer(analyzer="char", lowercase=False).fit([n.title() for n in names])
    vocab_size = len(vectorizer.get_feature_names_out()) + 2  # as ethnicolr2 computes it: letters, then oob
    torch.manual_seed(0)
    model = LSTM(vocab_size, HIDDEN_SIZE, 5, num_layers=NUM_LAYERS)
    torch.save(model.state_dict(), folder / "census_lstm_lastname.pt")
    joblib.dump(vectorizer, folder / "pt_vec_census_lastname.joblib")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="names folder (default: $NAMEORIGIN_DATA or the tutorial's archive)")
    ap.add_argument("--names", type=int, default=100_000, help="names a sample (default: %(default)s)")
    args = ap.parse_args()
    try:
        import ethnicolr2  # noqa: F401
    except ImportError:
        raise SystemExit(
            "ethnicolr2 is not installed: pip install --no-deps ethnicolr2==0.3.3 && "
            "pip install huggingface-hub (see this script's docstring for why --no-deps)"
        ) from None
    from importlib.metadata import version

    real, labels = real_names(args.data)
    samples = two_samples(real, args.names)
    print(
        f"ethnicolr2 {version('ethnicolr2')} (random weights of its census last-name LSTM's shape), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.names:,} names a sample\n"
    )
    print(
        f"{'sample':<9} {'distinct':>9} {'ethnicolr2 names/s':>19} {'model':<8} {'nameorigin names/s':>19} {'ratio':>7}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        random_ethnicolr2_model(folder, real)
        os.environ["ETHNICOLR2_MODEL_DIR"] = str(folder)
        from functools import partialmethod

        import tqdm  # ethnicolr2 draws a bar per call; off, so that both sides print nothing
        from ethnicolr2 import pred_census_last_name

        tqdm.tqdm.__init__ = partialmethod(tqdm.tqdm.__init__, disable=True)
        predictors = {
            "bundled": Predictor.load(None),
            "gru 128": Predictor.load(gru128_checkpoint(labels, folder / "gru128.safetensors")),
        }
        warm = pd.DataFrame({"name": real[:500]})
        pred_census_last_name(warm, "name")
        for p in predictors.values():
            predict_frame(warm, model=p, name_type="surname")
        for sample, names in samples.items():
            df = pd.DataFrame({"name": names})
            peer = len(names) / timed(lambda df=df: pred_census_last_name(df, "name"))
            for label, predictor in predictors.items():
                ours = len(names) / timed(
                    lambda df=df, predictor=predictor: predict_frame(df, model=predictor, name_type="surname")
                )
                print(
                    f"{sample:<9} {len(set(names)):>9,} {peer:>19,.0f} {label:<8} {ours:>19,.0f} {ours / peer:>6.1f}x",
                    flush=True,
                )


if __name__ == "__main__":
    main()
