"""Forecast the final loss while a run trains, inside the training frameworks.

* :mod:`cdfast.integrations.hf`: ``ForecastCallback``, a ``transformers.TrainerCallback``;
* :mod:`cdfast.integrations.lightning`: ``ForecastCallback``, a Lightning ``Callback``
  (``lightning.pytorch`` and ``pytorch_lightning``).

Each is built with no arguments, reads the run's planned LR schedule from the trainer's
scheduler and logs ``predicted_final_loss`` (``_low``, ``_high``) through the framework's
own logging (docs/integrations.md).  The frameworks are imported by those modules only
(``pip install "cdfast[integrations]"``); importing this package imports none of them.
"""
