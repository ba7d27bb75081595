"""nameorigin: which language a name comes from, with character-level recurrent networks."""
from .frame import predict_frame
from .predict import Prediction, Predictor

__version__ = "0.1.0"
__all__ = ["Predictor", "Prediction", "predict_frame", "__version__"]
