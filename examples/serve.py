"""The handler a Model serves: one JSON request in, one JSON answer out. A ValueError, TypeError or KeyError
answers 422 (the caller's input), any other exception 500; the replica stays up either way."""


def predict(payload: dict) -> dict:
    values = payload.get("values")
    if not isinstance(values, list):
        raise ValueError("'values' must be a list of numbers")
    return {"doubled": [2 * x for x in values]}
