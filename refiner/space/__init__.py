"""Search spaces: parameter types, the portable JSON format, and KerasTuner / Optuna conversion.

* :mod:`~refiner.space.parameters`: the parameter types;
* :mod:`~refiner.space.search_space`: :class:`SearchSpace` and its JSON form;
* :mod:`~refiner.space.regions`: a space that is a union of boxes (regions);
* :mod:`~refiner.space.libraries`: KerasTuner and Optuna forms.

A :class:`SearchSpace` is an ordered, immutable collection of parameters. Each parameter
type validates itself in its constructor, so a space that exists is a valid space. Its JSON
form is ``schemas/search_space.schema.json`` (an example in :mod:`~refiner.space.search_space`).
"""

from refiner.space.libraries import REGION_PARAMETER, keras_tuner_problems
from refiner.space.parameters import (
    MAX_NAME_LENGTH, Boolean, Choice, Condition, Fixed, Float, Int, Parameter, discrete_values, parameter_from_dict,
    same_scalar,
)
from refiner.space.regions import Region
from refiner.space.search_space import FORMAT_VERSION, SearchSpace

__all__ = [
    "Condition",
    "Float",
    "Int",
    "Choice",
    "Boolean",
    "Fixed",
    "Parameter",
    "Region",
    "REGION_PARAMETER",
    "SearchSpace",
    "FORMAT_VERSION",
    "MAX_NAME_LENGTH",
    "discrete_values",
    "keras_tuner_problems",
    "parameter_from_dict",
    "same_scalar",
]
