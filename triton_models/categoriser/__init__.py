"""The categoriser as Triton runs it: features, network, scoring, hierarchy, serving, metadata.

``contract`` and ``client`` are its request/response layout and Prediction building
(shared by the stream and offline prediction), ``export`` writes a model version and
``model_control`` loads and promotes versions. Training lives in the ``training`` package.
"""
