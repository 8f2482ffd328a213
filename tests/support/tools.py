"""Tool definitions shared by the engine and server tool-calling tests."""

from __future__ import annotations

# No free text in the arguments, so random weights can finish a call within the token budget.
WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {
        "city": {"enum": ["Paris", "Oslo", "Lima"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "days"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": WEATHER_PARAMETERS,
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
