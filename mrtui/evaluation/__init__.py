"""Evaluation of each iteration's model: suites, scoring and the eval runner."""
