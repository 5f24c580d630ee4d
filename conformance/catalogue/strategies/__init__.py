"""Hypothesis strategies of valid calls, one module per op family, valid by construction."""
