"""The loopback LiveKit dev server (its own process: `framepool devserver`, `python -m framepool.devserver`,
or embedded in `framepool dev` and the demo): signal protocol, media relay, Twirp services and `/agent`,
for tests, the demo and local development only."""
