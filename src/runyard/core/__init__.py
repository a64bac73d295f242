"""The platform's vocabulary: resources, phases, quantities and errors. Imports nothing of runyard's."""
