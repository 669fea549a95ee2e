"""Research tools: simulated players, the closed-loop experiment, ceilings and benchmarks (SPEC §4).

They import the core like any client would; the `gap` command only wires them to its sub-commands."""
