"""The categoriser: rule labels, the Wide & Deep model, its training, export and evaluation.

``rules`` is the legacy rule labeller (weak labels and a baseline), ``labels`` reads
human-labelled JSON lines, ``metrics`` and ``baselines`` evaluate systems side by side.
"""
