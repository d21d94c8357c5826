"""Prompt templates, presets and demo data shipped with mrtui."""
