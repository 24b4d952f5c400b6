"""Poisoning attacks on a training split.

Every attack takes the clean training rows and a poison level and returns the
poisoned rows with the ground-truth mask of the rows it changed or added. The
mask is for scoring only: detectors never see it. The test split never reaches
an attack.

Rows are chosen from one permutation drawn from ``rng``, so with the same
generator a higher level poisons a superset of a lower level's rows: levels of
one trial compare paired. Anything an attack fits or draws that does not depend
on the level (a surrogate model, a trigger) is the same at every level.

Parameters that name a class or a feature accept a name or a 0-based index;
``apply_attack`` resolves them against the dataset before the attack runs.

scikit-learn is imported only by the attacks that fit or score a model, so a
poison task running the others starts without it (about 2 s less per task).
"""

from poisonlab.attacks.base import Attack, Poisoned, n_poisoned
from poisonlab.attacks.feature import (
    backdoor,
    feature_noise,
    feature_noise_inrange,
    injection,
    least_informative_features,
    missing_values,
    stamp_trigger,
)
from poisonlab.attacks.influence import flip_gains, label_flip_greedy
from poisonlab.attacks.label import (
    label_flip,
    label_flip_margin,
    label_flip_targeted,
    most_confused_pair,
    surrogate_proba,
)
from poisonlab.attacks.registry import (
    ATTACKS,
    apply_attack,
    attack_spec,
    check_attack_params,
    dataset_attack_params,
    resolve_params,
)
from poisonlab.attacks.subpopulation import in_subpopulation, subpopulation

__all__ = [
    "ATTACKS",
    "Attack",
    "Poisoned",
    "apply_attack",
    "attack_spec",
    "backdoor",
    "check_attack_params",
    "dataset_attack_params",
    "feature_noise",
    "feature_noise_inrange",
    "flip_gains",
    "in_subpopulation",
    "injection",
    "label_flip",
    "label_flip_greedy",
    "label_flip_margin",
    "label_flip_targeted",
    "least_informative_features",
    "missing_values",
    "most_confused_pair",
    "n_poisoned",
    "resolve_params",
    "stamp_trigger",
    "subpopulation",
    "surrogate_proba",
]
