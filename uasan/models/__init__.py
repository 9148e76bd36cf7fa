"""UASAN model: bridge, refiner, context encoder, alignment decoder, prompts, predictor and the variants."""

from uasan.models.bridge import BridgeEncoder
from uasan.models.config import VARIANTS, ModelConfig
from uasan.models.layers import SACEncoder, URADecoder, VisualRefiner
from uasan.models.prompts import PromptLearner
from uasan.models.uasan import MOTION_DIM, UASAN

__all__ = [
    "MOTION_DIM",
    "UASAN",
    "VARIANTS",
    "BridgeEncoder",
    "ModelConfig",
    "PromptLearner",
    "SACEncoder",
    "URADecoder",
    "VisualRefiner",
]
