"""Tests of the missions package: cadence, policy, proposals, runner, daemon, CLI, processes."""
