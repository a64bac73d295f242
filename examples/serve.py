"""The handler a Model serves (its controller comes in a later release): one request in, one answer out."""


def predict(payload: dict) -> dict:
    return {"doubled": [2 * x for x in payload.get("values", [])]}
