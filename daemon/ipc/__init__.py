"""How the supervisor and its workers talk (both processes).

`control` is the typed control channel (msgspec messages over a socketpair), `ring` the shared-memory
frame ring (the C extension `framepool._ring`, with `pyring` its pure-Python reference). Code on either
side of the process line may import this package; neither side imports the other's.
"""
