"""The criteria engine: rulesets as data (``rulesets/*.yaml``), pure evaluation."""

from .evaluate import Evaluation, evaluate
from .model import Ruleset, RulesetError, available_rulesets, get_ruleset

__all__ = ["Evaluation", "Ruleset", "RulesetError", "available_rulesets", "evaluate", "get_ruleset"]
