"""A specs reward-model plugin that verifies the arithmetic written in each reasoning step."""

from specs_arithmetic_prm.verifier import ArithmeticOptions, ArithmeticVerifier, check_equations

__all__ = ["ArithmeticOptions", "ArithmeticVerifier", "check_equations"]
