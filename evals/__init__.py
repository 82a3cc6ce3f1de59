"""Evaluation between stages: prompt suites, scorers, the LLM judge, the gate and the report."""
