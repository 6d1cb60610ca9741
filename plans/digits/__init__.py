"""A small CNN on the optdigits 8×8 handwritten digits (../shared/plan-digits.md).

Every numbered definition of the plan (D1–D5, M1–M4, T1–T8, E1–E6) is named in the
docstring of the module, class or function that implements it. Every import inside the
plan is relative: another plan is loaded in the same process.
"""
