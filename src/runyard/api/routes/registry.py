"""The MLflow model-registry REST API (/api/2.0/mlflow/registered-models/..., /model-versions/...)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
