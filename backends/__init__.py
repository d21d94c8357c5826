"""Inference backends for mrtui: plain data in, plain data out, heavy libraries imported lazily."""

from .base import (
    BackendError,
    BackendInfo,
    Completion,
    Failure,
    InferenceBackend,
    Message,
    Request,
    Result,
    SamplingParams,
    UnsupportedFeature,
)
from .registry import available_backends, load_backend

__all__ = [
    "BackendError",
    "BackendInfo",
    "Completion",
    "Failure",
    "InferenceBackend",
    "Message",
    "Request",
    "Result",
    "SamplingParams",
    "UnsupportedFeature",
    "available_backends",
    "load_backend",
]
