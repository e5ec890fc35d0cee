"""`make demo` (`python -m framepool.demo`): a live room with the dev server, an agent, a publisher and a
listener; `processors` holds the demo's example processor, `samples` its deterministic test media."""
