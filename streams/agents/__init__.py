"""Faust agents, one module each: normalise, then infer."""
