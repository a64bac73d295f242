"""A stand-in training script: reads its config from the environment, prints progress, writes a model."""

import json
import os
import time

epochs = int(os.environ.get("EPOCHS", "3"))
for epoch in range(1, epochs + 1):
    loss = 1.0 / epoch
    print(f"epoch {epoch}/{epochs} loss={loss:.3f}", flush=True)
    time.sleep(0.1)
with open("model.json", "w") as f:
    json.dump({"epochs": epochs, "loss": loss}, f)
print(f"run {os.environ.get('RUNYARD_RUN_ID')} done; model saved")
