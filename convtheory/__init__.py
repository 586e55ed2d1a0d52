"""convtheory: the convergence theory of optimization-based meta-learning and bilevel optimization, held up
against measurement.

A problem knows its constants, a method produces a trace, a theorem predicts the trace, and a check holds the
two side by side.
"""

from .types import Constants, ConvTheoryError, InvalidArgumentError, InvalidTypeError, OracleCount

__version__ = "0.1.0"
__all__ = ["Constants", "ConvTheoryError", "InvalidArgumentError", "InvalidTypeError", "OracleCount"]
