"""The processor worker process (worker process only).

`main` is the process's entry and main loop, `hosting` the streams it hosts and the contexts their
processors see, `scale` the video downscaler. The supervisor never imports this package: it reaches
workers through `framepool.ipc`.
"""
