"""Policy gate: destructive opt-in per space, rate limits, injection flagging, modes."""
