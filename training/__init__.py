"""Training and evaluating the categoriser, offline.

``labels`` reads human-labelled JSON lines, ``rules`` is the rule labeller (weak
labels and a baseline), ``examples`` turns products into encoded examples,
``train`` is the training loop with ``calibration`` and ``thresholds``,
``evaluation`` and ``baselines`` score systems side by side, and the ``*_cli``
modules are the ``catstream train|predict|evaluate`` commands. What Triton runs
lives in ``triton_models.categoriser``; this package imports it, never the reverse.
"""
