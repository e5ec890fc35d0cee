"""`python -m framepool.bridge`: the bridge process (bridge process; started by `framepool.bridgehost`)."""

from framepool.bridge.process import main

if __name__ == "__main__":
    main()
