"""Adversarial training: Madry et al. (2018) PGD training and fast FGSM-RS training (Wong et al. 2020).

The whole training set lives on the device as uint8; batches are drawn with a seeded permutation, augmented
on the device (CIFAR-10: random crop with 4-pixel zero padding and horizontal flip), attacked, and used for
one optimiser step. The LR follows a one-cycle ("cyclic", Wong et al.) schedule over the planned number of
steps; the eps can ramp up linearly at the start (helps MNIST at 0.3).

After every epoch the trainer measures clean and PGD-10 accuracy on a held-out slice of the training set,
keeps the best weights by held-out robust accuracy (which also guards against FGSM's catastrophic
overfitting) and writes a resumable checkpoint to ``out``. With ``time_budget`` the number of epochs is
planned from timed steps before the first epoch. At the end ``out`` holds the best weights (no
optimiser state) and the training card.

The parts: ``config.py`` (TrainConfig, defaults, validation), ``data.py`` (the training split, augmentation),
``run.py`` (one run's state: device, holdout split, model, optimiser, RNGs), ``adversarial.py`` (the attack in
the loop: FGSM-RS/PGD steps, the holdout check), ``schedule.py`` (LR, eps ramp, epochs planned from a time
budget), ``checkpoint.py`` (the card, resumable checkpoints, ``pack``), ``loop.py`` (``train``) and
``defaults.py`` (the default models' recipes, ``train_default_model``).
"""

from workers.models.train.adversarial import fgsm_rs_examples
from workers.models.train.checkpoint import pack
from workers.models.train.config import MAX_EPS, RECIPE_DEFAULTS, Method, TrainConfig, TrainError
from workers.models.train.data import augment_batch, load_train_data
from workers.models.train.defaults import DEFAULT_RECIPES, train_default_model
from workers.models.train.loop import train
from workers.models.train.schedule import cyclic_lr, ramp

__all__ = [
    "DEFAULT_RECIPES",
    "MAX_EPS",
    "RECIPE_DEFAULTS",
    "Method",
    "TrainConfig",
    "TrainError",
    "augment_batch",
    "cyclic_lr",
    "fgsm_rs_examples",
    "load_train_data",
    "pack",
    "ramp",
    "train",
    "train_default_model",
]
