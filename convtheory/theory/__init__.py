"""Theorems as pure functions of the constants: bounds, rates, step-size conditions and guidelines.

One module per paper or theme; every function cites its source (paper + theorem or THEORY.md section) and says
whether its constants are exact ([derived] results on synthetic families) or shape only (constants the papers
give as O(.) or that THEORY.md tags [uncertain]/[secondary]; such constants are explicit arguments).
This layer depends on nothing but numbers (floats and numpy arrays).

``BOUNDS`` maps ``"module.function"`` to every public scalar theory function.
"""

from . import anil, bilevel, esj, guidelines, hd, imaml, maml, quadratic, stochastic_bilevel, warm_start
from .anil import *  # noqa: F401,F403
from .bilevel import *  # noqa: F401,F403
from .bound import Bound
from .esj import *  # noqa: F401,F403
from .guidelines import *  # noqa: F401,F403
from .hd import *  # noqa: F401,F403
from .imaml import *  # noqa: F401,F403
from .maml import *  # noqa: F401,F403
from .quadratic import *  # noqa: F401,F403
from .stochastic_bilevel import *  # noqa: F401,F403
from .warm_start import *  # noqa: F401,F403

_MODULES = (quadratic, maml, anil, bilevel, imaml, esj, hd, stochastic_bilevel, warm_start)

#: name ("module.function") -> theory function, for every public function of the theorem modules.
BOUNDS = {
    f"{m.__name__.rsplit('.', 1)[-1]}.{name}": getattr(m, name)
    for m in _MODULES
    for name in m.__all__
    if callable(getattr(m, name)) and not isinstance(getattr(m, name), type)
}

__all__ = ["Bound", "BOUNDS", "anil", "bilevel", "esj", "guidelines", "hd", "imaml", "maml", "quadratic",
           "stochastic_bilevel", "warm_start"]
for _m in (*_MODULES, guidelines):
    __all__ += list(_m.__all__)
del _m
