"""What a replica serves: a function of the project (`module:function`, imported from the working directory,
i.e. the snapshot; called with the request's JSON, returning JSON-able data; may be `async def`) or an
MLflow model. MLflow models answer as `mlflow models serve` does ({"predictions": [...]}, bodies with
dataframe_split / dataframe_records / instances / inputs, optional params); a scikit-learn model takes a
fast path for numeric dataframe_split / instances / inputs bodies: its own predict on a numpy array, without
pandas or the schema enforcement of pyfunc.
"""

from __future__ import annotations

import importlib
import inspect
import io
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any


class InvalidInput(Exception):
    """The request's payload is not something the model takes (answered 422)."""


def load_handler(spec: str) -> Callable[[Any], Any]:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"RUNYARD_MODEL_HANDLER: expected module:function, got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"RUNYARD_MODEL_HANDLER: {spec} is not callable")
    return target


def is_async(fn: Callable[..., Any]) -> bool:
    """An `async def` function, or an object whose __call__ is one."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


class MlflowModel:
    """An MLflow model, called like a handler: payload dict in, response dict out."""

    def __init__(self, uri: str) -> None:
        import mlflow.pyfunc
        from mlflow.pyfunc import scoring_server

        self._scoring = scoring_server
        self.pyfunc = mlflow.pyfunc.load_model(uri)
        self.schema = self.pyfunc.metadata.get_input_schema()
        self.native = None
        if "sklearn" in self.pyfunc.metadata.flavors:
            self.native = self.pyfunc.get_raw_model()
            names = getattr(self.native, "feature_names_in_", None)  # fitted on a DataFrame
            self.features = [] if names is None else [str(n) for n in names]
            # predicting on a numpy array what was fitted on a DataFrame warns, once per call site
            warnings.filterwarnings("ignore", message="X does not have valid feature names")
        import numpy

        self._np = numpy

    def __call__(self, payload: Any) -> Any:
        if not isinstance(payload, dict):
            raise InvalidInput(
                "expected an object with dataframe_split, dataframe_records, instances or inputs"
            )
        if self.native is not None and "params" not in payload:
            rows = self._fast_rows(payload)
            if rows is not None:
                return {"predictions": self.native.predict(rows).tolist()}
        return self._pyfunc(payload)

    def _fast_rows(self, payload: dict) -> Any:
        """A float array for the native model, or None (not a plain numeric body: the pyfunc path)."""
        if len(payload) != 1:
            return None
        np = self._np
        if "dataframe_split" in payload:
            split = payload["dataframe_split"]
            if not isinstance(split, dict) or not isinstance(split.get("data"), list):
                return None
            try:
                rows = np.asarray(split["data"], dtype=float)
            except (ValueError, TypeError):
                return None
            columns = split.get("columns")
            if rows.ndim != 2:
                return None
            if self.features and columns and list(columns) != self.features:
                try:
                    rows = rows[:, [list(columns).index(f) for f in self.features]]
                except ValueError:
                    return None  # a column missing: let pyfunc say which
            return rows
        data = payload.get("instances", payload.get("inputs"))
        if not isinstance(data, list):
            return None
        try:
            rows = np.asarray(data, dtype=float)
        except (ValueError, TypeError):
            return None
        return rows if rows.ndim == 2 else None

    def _pyfunc(self, payload: dict) -> Any:
        s = self._scoring
        from mlflow.exceptions import MlflowException

        data = {k: v for k, v in payload.items() if k != "params"}
        params = payload.get("params")
        try:
            parsed = s.infer_and_parse_data(data, self.schema)
            if params is not None:
                predictions = self.pyfunc.predict(parsed, params=params)
            else:
                predictions = self.pyfunc.predict(parsed)
        except MlflowException as e:
            if e.get_http_status_code() < 500:
                raise InvalidInput(e.message) from e
            raise
        out = io.StringIO()
        s.predictions_to_json(predictions, out)
        return RawResponse(out.getvalue().encode())


class RawResponse(bytes):
    """An answer already serialized (mlflow's encoder handles numpy and pandas values)."""


def load(handler: str | None, source: str | None) -> Callable[[Any], Any]:
    if handler:
        return load_handler(handler)
    if source:
        return MlflowModel(source)
    raise ValueError("nothing to serve: set RUNYARD_MODEL_HANDLER (module:function) or RUNYARD_MODEL_SOURCE")
