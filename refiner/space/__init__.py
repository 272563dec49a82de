"""Search spaces: parameter types, the portable JSON format, and KerasTuner / Optuna conversion.

* :mod:`~refiner.space.parameters`: the parameter types;
* :mod:`~refiner.space.search_space`: :class:`SearchSpace` and its JSON form;
* :mod:`~refiner.space.libraries`: KerasTuner and Optuna forms.

A :class:`SearchSpace` is an ordered, immutable collection of parameters. Each parameter
type validates itself in its constructor, so a space that exists is a valid space.
The JSON form is described by ``schemas/search_space.schema.json``::

    {"format_version": 1, "parameters": [
        {"name": "learning_rate", "type": "float", "low": 1e-4, "high": 1e-2, "log": true},
        {"name": "units", "type": "int", "low": 64, "high": 512, "step": 64},
        {"name": "activation", "type": "choice", "values": ["relu", "tanh"]},
        {"name": "dropout", "type": "float", "low": 0.0, "high": 0.5,
         "conditions": [{"parent": "use_dropout", "values": [true]}]},
        {"name": "use_dropout", "type": "boolean"}]}
"""

from refiner.space.libraries import keras_tuner_problems
from refiner.space.parameters import (
    MAX_NAME_LENGTH, Boolean, Choice, Condition, Fixed, Float, Int, Parameter, discrete_values, parameter_from_dict,
    same_scalar,
)
from refiner.space.search_space import FORMAT_VERSION, SearchSpace

__all__ = [
    "Condition",
    "Float",
    "Int",
    "Choice",
    "Boolean",
    "Fixed",
    "Parameter",
    "SearchSpace",
    "FORMAT_VERSION",
    "MAX_NAME_LENGTH",
    "discrete_values",
    "keras_tuner_problems",
    "parameter_from_dict",
    "same_scalar",
]
